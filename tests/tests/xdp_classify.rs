//! The XDP program's flow decisions through BPF_PROG_TEST_RUN: SNI and Host
//! classification, allow lists, strict mode, the deny list, SYN rate limits,
//! flow retirement, and mutated payloads. Needs root; fails, never skips.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
};

use ingress_common::{
    Config, F_CONFIG_DENY, F_CONFIG_STRICT_HOSTS, F_LISTENER_HTTP, F_LISTENER_TLS,
    FLOW_CACHE_FLUSH_NS, FlowValue, REASON_ALLOWLIST, REASON_UNKNOWN_HOST, Stat, VERDICT_L7,
    VERDICT_REJECT, VERDICT_UNDECIDED, flow_cache_slot,
};
use xingress::{
    dataplane::{Dataplane, FlowKey, Policy, PolicySync},
    model::Cidr,
};
use xingress_tests::xdp::{
    self, ACK, FIN, Flow, RST, XDP_DROP, XDP_PASS, client_hello, client_hello_sni_last, run,
    tcp_checksum_ok_v4, tcp_flags_v4,
};

const NODE: &str = "198.18.0.1";

struct Rig {
    dp: Dataplane,
    sync: PolicySync,
    policy: Policy,
    next_port: u16,
}

fn rig(config: Config, deny: &[&str]) -> Rig {
    let mut dp = xdp::dataplane();
    dp.set_listeners(&[(443, F_LISTENER_TLS), (80, F_LISTENER_HTTP)])
        .unwrap();
    let mut sync = PolicySync::new(dp.take_policy().expect("policy maps")).with_flows(dp.flows());
    dp.stats().set_names(sync.names());
    let allow: Vec<Cidr> = vec![
        "192.0.2.0/24".parse().unwrap(),
        "2001:db8:1::/48".parse().unwrap(),
    ];
    let policy = Policy {
        hosts: BTreeMap::from([
            ("cafe.example.com".to_string(), None),
            ("*.wild.test".to_string(), None),
            ("secure.test".to_string(), Some(allow)),
        ]),
        deny: deny.iter().map(|c| c.parse().unwrap()).collect(),
        config: Config {
            flags: config.flags | if deny.is_empty() { 0 } else { F_CONFIG_DENY },
            ..config
        },
    };
    let report = sync.apply(&policy).unwrap();
    assert!(report.skipped.is_empty());
    Rig {
        dp,
        sync,
        policy,
        next_port: 20000,
    }
}

impl Rig {
    fn flow(&mut self, src: &str, dport: u16) -> Flow {
        self.next_port += 1;
        let dst = if src.contains(':') {
            "2001:db8:ff::1"
        } else {
            NODE
        };
        Flow::new(src, self.next_port, dst, dport)
    }

    fn state(&self, f: &Flow) -> Option<FlowValue> {
        self.dp.flows().get(
            SocketAddr::new(f.src, f.sport),
            SocketAddr::new(f.dst, f.dport),
        )
    }

    fn host_name(&self, id: u32) -> String {
        if id == 0 {
            return "-".into();
        }
        self.sync
            .names()
            .lock()
            .unwrap()
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("#{id}"))
    }

    /// SYN, then the first payload: (verdict of the payload packet, flow verdict, host, packet out).
    fn open(&mut self, src: &str, dport: u16, payload: &[u8]) -> (u32, u8, String, Vec<u8>, Flow) {
        let f = self.flow(src, dport);
        assert_eq!(run(&mut self.dp, &f.syn()).0, XDP_PASS);
        let (action, out) = run(&mut self.dp, &f.data(payload));
        let st = self.state(&f).expect("flow tracked");
        (action, st.verdict, self.host_name(st.host_id), out, f)
    }

    /// An L7 flow to cafe.example.com that this CPU's flow cache holds
    /// (its second packet after the ClientHello was a cache hit).
    fn open_cached(&mut self, src: &str) -> Flow {
        let hello = client_hello(Some("cafe.example.com"), 0);
        let (_, verdict, _, _, f) = self.open(src, 443, &hello);
        assert_eq!(verdict, VERDICT_L7, "{src}");
        let hits = self.stat(Stat::FlowCacheHits);
        run(&mut self.dp, &f.data(b"x"));
        run(&mut self.dp, &f.data(b"x"));
        assert_eq!(self.stat(Stat::FlowCacheHits), hits + 1, "{src}: cached");
        f
    }

    fn stat(&self, s: Stat) -> u64 {
        self.dp.stats().get(s).unwrap()
    }
}

fn http(head: &str) -> Vec<u8> {
    head.replace('\n', "\r\n").into_bytes()
}

#[test]
fn tls_sni_classifies_flows() {
    let mut r = rig(Config::default(), &[]);
    let long = format!("{}.example.com", "x".repeat(60));
    let split = client_hello(Some("cafe.example.com"), 1200)[..600].to_vec();
    // 64 and 63 bytes: every word of the key full, and the last one short.
    let label = "x".repeat(54);
    let key_long = format!("{label}.wild.test");
    let almost = format!("{}.wild.test", &label[1..]);
    let cases: Vec<(&str, Vec<u8>, u8, &str)> = vec![
        (
            "SNI last: the name ends the segment",
            client_hello_sni_last("Cafe.Example.com."),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "name as long as the key",
            client_hello(Some(&key_long), 0),
            VERDICT_L7,
            "*.wild.test",
        ),
        (
            "name as long as the key, ending the segment",
            client_hello_sni_last(&key_long),
            VERDICT_L7,
            "*.wild.test",
        ),
        (
            "name one byte shorter than the key",
            client_hello(Some(&almost), 0),
            VERDICT_L7,
            "*.wild.test",
        ),
        (
            "SNI first",
            client_hello(Some("cafe.example.com"), 0),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "SNI after 700 bytes of extensions",
            client_hello(Some("cafe.example.com"), 700),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "upper-case SNI",
            client_hello(Some("CAFE.Example.COM"), 0),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "wildcard",
            client_hello(Some("shop.wild.test"), 0),
            VERDICT_L7,
            "*.wild.test",
        ),
        (
            "two labels under a wildcard",
            client_hello(Some("a.b.wild.test"), 0),
            VERDICT_L7,
            "-",
        ),
        (
            "unknown host, not strict",
            client_hello(Some("nope.test"), 0),
            VERDICT_L7,
            "-",
        ),
        ("no SNI", client_hello(None, 0), VERDICT_UNDECIDED, "-"),
        (
            "ClientHello split before the SNI",
            split,
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "name longer than the key",
            client_hello(Some(&long), 0),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "not TLS",
            b"\x00\x01garbage".to_vec(),
            VERDICT_UNDECIDED,
            "-",
        ),
    ];
    for (name, payload, verdict, host) in cases {
        let (action, v, h, _, _) = r.open("192.0.2.10", 443, &payload);
        assert_eq!(action, XDP_PASS, "{name}");
        assert_eq!((v, h.as_str()), (verdict, host), "{name}");
    }
    let (_, v, h, _, _) = r.open(
        "2001:db8:1::7",
        443,
        &client_hello(Some("cafe.example.com"), 0),
    );
    assert_eq!((v, h.as_str()), (VERDICT_L7, "cafe.example.com"), "IPv6");
    assert_eq!(r.stat(Stat::Undecided), 4);
    let hosts = r.dp.stats().hosts();
    let cafe = hosts
        .iter()
        .find(|(h, _)| h == "cafe.example.com")
        .unwrap()
        .1;
    assert_eq!(cafe.flows, 5, "per-host counters");
}

#[test]
fn only_ascii_capitals_are_lowercased() {
    let mut r = rig(Config::default(), &[]);
    // Names no DNS rule would have, put in HOSTS directly: each differs
    // from a neighbour of A-Z by the case bit, or carries non-ASCII bytes.
    let mut policy = r.policy.clone();
    for h in [
        "az-09.test",
        "`at.test",
        "x{brace.test",
        "\u{c9}x.test",
        "z\u{e9}.test",
    ] {
        policy.hosts.insert(h.to_string(), None);
    }
    r.sync.apply(&policy).unwrap();
    for (sni, host) in [
        ("AZ-09.TEST", "az-09.test"),
        ("`at.test", "`at.test"),
        // '@' and '[' sit next to 'A' and 'Z': their case bit stays.
        ("@AT.TEST", "-"),
        ("X[BRACE.TEST", "-"),
        ("X{BRACE.TEST", "x{brace.test"),
        // UTF-8 bytes with a capital in their low seven bits stay as they are.
        ("\u{c9}X.TEST", "\u{c9}x.test"),
        ("Z\u{e9}.TEST", "z\u{e9}.test"),
        ("Z\u{c9}.TEST", "-"),
    ] {
        let (_, v, h, _, _) = r.open("192.0.2.10", 443, &client_hello(Some(sni), 0));
        assert_eq!((v, h.as_str()), (VERDICT_L7, host), "{sni}");
        let head = http(&format!("GET / HTTP/1.1\nHost: {sni}\n\n"));
        let (_, v, h, _, _) = r.open("192.0.2.10", 80, &head);
        assert_eq!((v, h.as_str()), (VERDICT_L7, host), "Host: {sni}");
    }
}

#[test]
fn http_host_classifies_flows() {
    let mut r = rig(Config::default(), &[]);
    let cases: Vec<(&str, Vec<u8>, u8, &str)> = vec![
        (
            "Host second",
            http("GET / HTTP/1.1\nHost: cafe.example.com\n\n"),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "lower-case name, port, no space",
            http(
                "POST /x HTTP/1.1\nUser-Agent: t\nhost:CAFE.example.com:8080\nContent-Length: 0\n\n",
            ),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "tab and trailing dot",
            http("GET / HTTP/1.1\nHOST:\tcafe.example.com.\n\n"),
            VERDICT_L7,
            "cafe.example.com",
        ),
        (
            "wildcard",
            http("GET / HTTP/1.1\nHost: api.wild.test\n\n"),
            VERDICT_L7,
            "*.wild.test",
        ),
        (
            "no Host",
            http("GET / HTTP/1.0\nAccept: */*\n\n"),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "Host after this segment",
            http(&format!("GET / HTTP/1.1\nX-Long: {}\n", "a".repeat(300))),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "Host value cut by the segment end",
            http("GET / HTTP/1.1\nHost: cafe.exa"),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "IPv6 literal",
            http("GET / HTTP/1.1\nHost: [2001:db8::1]:80\n\n"),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "not HTTP",
            b"\x16\x03\x01 tls on port 80".to_vec(),
            VERDICT_UNDECIDED,
            "-",
        ),
        (
            "\"Hostile\" header is not Host",
            http("GET / HTTP/1.1\nHostile: x\nHost: cafe.example.com\n\n"),
            VERDICT_L7,
            "cafe.example.com",
        ),
    ];
    for (name, payload, verdict, host) in cases {
        let (action, v, h, _, _) = r.open("192.0.2.11", 80, &payload);
        assert_eq!(action, XDP_PASS, "{name}");
        assert_eq!((v, h.as_str()), (verdict, host), "{name}");
    }
}

#[test]
fn allow_lists_reject_outside_sources_with_an_rst() {
    let mut r = rig(Config::default(), &[]);
    let hello = client_hello(Some("secure.test"), 0);
    let (_, v, h, _, _) = r.open("192.0.2.77", 443, &hello);
    assert_eq!(
        (v, h.as_str()),
        (VERDICT_L7, "secure.test"),
        "inside the allow list"
    );
    let (_, v, _, _, _) = r.open("2001:db8:1::9", 443, &hello);
    assert_eq!(v, VERDICT_L7, "inside the IPv6 allow list");
    // The source comes from the flow key's words: an IPv6 source outside
    // the list, whose destination and ports are the same as an inside one's.
    let (_, v, _, _, _) = r.open("2001:db8:2::9", 443, &hello);
    assert_eq!(v, VERDICT_REJECT, "outside the IPv6 allow list");

    let (action, v, h, out, f) = r.open("198.51.100.9", 443, &hello);
    assert_eq!(
        action, XDP_PASS,
        "passed on, as an RST for the local socket"
    );
    assert_eq!((v, h.as_str()), (VERDICT_REJECT, "secure.test"));
    assert_eq!(r.state(&f).unwrap().reason, REASON_ALLOWLIST);
    assert_eq!(tcp_flags_v4(&out), RST | ACK);
    assert!(
        tcp_checksum_ok_v4(&out),
        "the rewritten segment's checksum verifies"
    );
    assert_eq!(r.stat(Stat::RejectedAllowlist), 2, "one IPv6, one IPv4");
    // Later segments pass (the kernel answers them with an RST) and are counted.
    assert_eq!(run(&mut r.dp, &f.data(b"more")).0, XDP_PASS);
    assert_eq!(r.stat(Stat::RejectedPackets), 1);
    let secure =
        r.dp.stats()
            .hosts()
            .into_iter()
            .find(|(h, _)| h == "secure.test")
            .unwrap()
            .1;
    assert_eq!((secure.flows, secure.rejected), (2, 2));

    // The same source on HTTP is held to the same list.
    let (_, v, _, _, _) = r.open(
        "198.51.100.9",
        80,
        &http("GET / HTTP/1.1\nHost: secure.test\n\n"),
    );
    assert_eq!(v, VERDICT_REJECT);
}

#[test]
fn strict_mode_rejects_unknown_hosts_only() {
    let mut r = rig(
        Config {
            flags: F_CONFIG_STRICT_HOSTS,
            ..Default::default()
        },
        &[],
    );
    let (_, v, _, out, f) = r.open("192.0.2.12", 443, &client_hello(Some("unknown.test"), 0));
    assert_eq!(v, VERDICT_REJECT);
    assert_eq!(r.state(&f).unwrap().reason, REASON_UNKNOWN_HOST);
    assert_eq!(tcp_flags_v4(&out), RST | ACK);
    let (_, v, _, _, _) = r.open("192.0.2.12", 443, &client_hello(Some("x.wild.test"), 0));
    assert_eq!(v, VERDICT_L7);
    let (_, v, _, _, _) = r.open("192.0.2.12", 443, &client_hello(None, 0));
    assert_eq!(
        v, VERDICT_UNDECIDED,
        "no SNI: the agent decides, even in strict mode"
    );
    assert_eq!(r.stat(Stat::RejectedUnknownHost), 1);
}

#[test]
fn deny_list_drops_and_flows_retire() {
    let mut r = rig(Config::default(), &["203.0.113.0/24", "2001:db8:bad::/48"]);
    for src in ["203.0.113.9", "2001:db8:bad::1"] {
        let f = r.flow(src, 443);
        assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_DROP, "{src}");
        assert_eq!(run(&mut r.dp, &f.data(b"x")).0, XDP_DROP, "{src}");
        assert!(r.state(&f).is_none());
    }
    assert_eq!(r.stat(Stat::Denied), 4);
    // Traffic that is not to a listener is never touched.
    let f = r.flow("203.0.113.9", 22);
    assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_PASS);

    // A source denied while its flow is open is cut at its next packet.
    let (_, v, _, _, open) = r.open(
        "198.51.100.50",
        443,
        &client_hello(Some("cafe.example.com"), 0),
    );
    assert_eq!(v, VERDICT_L7);
    let mut policy = r.policy.clone();
    policy.deny.insert("198.51.100.0/24".parse().unwrap());
    r.sync.apply(&policy).unwrap();
    assert!(r.state(&open).is_none(), "the flow was dropped from FLOWS");
    assert_eq!(run(&mut r.dp, &open.data(b"more")).0, XDP_DROP);

    let (_, v, _, _, f) = r.open(
        "192.0.2.13",
        443,
        &client_hello(Some("cafe.example.com"), 0),
    );
    assert_eq!(v, VERDICT_L7);
    let retired = r.stat(Stat::FlowsRetired);
    assert_eq!(run(&mut r.dp, &f.packet(FIN | ACK, 2000, &[])).0, XDP_PASS);
    assert!(r.state(&f).is_none(), "FIN retires the flow");
    assert_eq!(r.stat(Stat::FlowsRetired), retired + 1);

    // Prefixes longer than /24 share their /24 with sources that pass (the
    // /24 index says "part" and DENY4 decides).
    let mut policy = r.policy.clone();
    for c in ["100.64.5.5/32", "100.64.6.16/28"] {
        policy.deny.insert(c.parse().unwrap());
    }
    r.sync.apply(&policy).unwrap();
    for (src, verdict) in [
        ("100.64.5.5", XDP_DROP),
        ("100.64.5.6", XDP_PASS),
        ("100.64.6.20", XDP_DROP),
        ("100.64.6.40", XDP_PASS),
        ("203.0.113.200", XDP_DROP),
        ("203.0.114.1", XDP_PASS),
    ] {
        let syn = r.flow(src, 443).syn();
        assert_eq!(run(&mut r.dp, &syn).0, verdict, "{src}");
    }

    // The list shrinks: both families pass again (entries leave DENY4 and DENY6).
    policy.deny.clear();
    r.sync.apply(&policy).unwrap();
    for src in [
        "203.0.113.9",
        "2001:db8:bad::1",
        "100.64.5.5",
        "100.64.6.20",
    ] {
        let syn = r.flow(src, 443).syn();
        assert_eq!(run(&mut r.dp, &syn).0, XDP_PASS, "{src}");
    }
    // An IPv6 range spanning the IPv4-mapped space denies IPv4 too.
    policy.deny.insert("::/1".parse().unwrap());
    r.sync.apply(&policy).unwrap();
    for (src, verdict) in [
        ("192.0.2.77", XDP_DROP),
        ("2001:db8::77", XDP_DROP),
        ("8000::77", XDP_PASS),
    ] {
        let syn = r.flow(src, 443).syn();
        assert_eq!(run(&mut r.dp, &syn).0, verdict, "{src}");
    }
}

#[test]
fn syn_rate_limits_per_source() {
    let mut r = rig(
        Config {
            syn_rate: 3,
            syn_burst: 3,
            ..Default::default()
        },
        &[],
    );
    let verdicts: Vec<u32> = (0..6)
        .map(|_| {
            let f = r.flow("192.0.2.50", 443);
            run(&mut r.dp, &f.syn()).0
        })
        .collect();
    assert_eq!(
        verdicts,
        [XDP_PASS, XDP_PASS, XDP_PASS, XDP_DROP, XDP_DROP, XDP_DROP]
    );
    let f = r.flow("192.0.2.51", 443);
    assert_eq!(
        run(&mut r.dp, &f.syn()).0,
        XDP_PASS,
        "another source has its own bucket"
    );
    assert_eq!(r.stat(Stat::SynRateLimited), 3);
    // Established flows are not rate limited.
    let (action, v, _, _, _) = r.open(
        "192.0.2.51",
        443,
        &client_hello(Some("cafe.example.com"), 0),
    );
    assert_eq!((action, v), (XDP_PASS, VERDICT_L7));
}

#[test]
fn mutated_first_segments_never_misbehave() {
    let mut r = rig(
        Config {
            flags: F_CONFIG_STRICT_HOSTS,
            ..Default::default()
        },
        &[],
    );
    let seeds = [
        client_hello(Some("cafe.example.com"), 0),
        client_hello(Some("shop.wild.test"), 300),
        http("GET / HTTP/1.1\nHost: cafe.example.com\n\n"),
    ];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const ROUNDS: usize = 1500;
    for round in 0..ROUNDS {
        let seed = &seeds[round % seeds.len()];
        let mut payload = seed.clone();
        for _ in 0..1 + next() % 8 {
            let i = (next() as usize) % payload.len();
            payload[i] = next() as u8;
        }
        let cut = 1 + (next() as usize) % payload.len();
        payload.truncate(cut);
        let port = if round % seeds.len() == 2 { 80 } else { 443 };
        let src = format!("192.0.2.{}", 100 + round % 100);
        let (action, v, _, _, _) = r.open(&src, port, &payload);
        assert_eq!(action, XDP_PASS, "round {round}");
        assert!(
            matches!(v, VERDICT_L7 | VERDICT_REJECT | VERDICT_UNDECIDED),
            "round {round}: verdict {v}"
        );
    }
    let decided =
        r.stat(Stat::ClassifiedL7) + r.stat(Stat::RejectedUnknownHost) + r.stat(Stat::Undecided);
    assert_eq!(decided, ROUNDS as u64);
    let _ = IpAddr::from([0, 0, 0, 0]);
}

#[test]
fn a_reused_port_starts_a_new_flow() {
    // Found by the xdp_first_segment fuzz target: a SYN on a 5-tuple whose
    // earlier connection ended unseen inherited that connection's verdict.
    let mut r = rig(
        Config {
            flags: F_CONFIG_STRICT_HOSTS,
            ..Default::default()
        },
        &[],
    );
    let (_, verdict, _, _, f) = r.open("192.0.2.9", 443, &client_hello(Some("nope.test"), 0));
    assert_eq!(verdict, VERDICT_REJECT);
    // The same source port again: a new connection, judged on its own.
    let new_before = r.stat(Stat::FlowsNew);
    assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_PASS);
    assert_eq!(r.stat(Stat::FlowsNew), new_before + 1);
    // A retransmitted SYN before any payload keeps the flow.
    assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_PASS);
    assert_eq!(r.stat(Stat::FlowsNew), new_before + 1);
    let (action, _) = run(
        &mut r.dp,
        &f.data(&client_hello(Some("cafe.example.com"), 0)),
    );
    assert_eq!(action, XDP_PASS);
    let st = r.state(&f).expect("flow tracked");
    assert_eq!(st.verdict, VERDICT_L7);
    assert_eq!(r.host_name(st.host_id), "cafe.example.com");
}

/// The program reads the clock once per jiffy per CPU and reuses it: flow
/// times must still be CLOCK_MONOTONIC (coarse, so up to a tick behind) and
/// move on as time passes.
#[test]
fn flow_times_follow_the_monotonic_clock() {
    // A tick is at most 10 ms (HZ >= 100); the coarse clock lags by up to one.
    const TICK: u64 = 10_000_000;
    let mut r = rig(Config::default(), &[]);
    let before = xingress::dataplane::cli::monotonic_ns();
    let (_, verdict, _, _, f) = r.open(
        "192.0.2.50",
        443,
        &client_hello(Some("cafe.example.com"), 0),
    );
    assert_eq!(verdict, VERDICT_L7);
    let after = xingress::dataplane::cli::monotonic_ns();
    let st = r.state(&f).unwrap();
    assert!(
        st.first_seen_ns + TICK >= before && st.first_seen_ns <= after,
        "first seen {} outside [{before} - a tick, {after}]",
        st.first_seen_ns
    );
    assert!(st.last_seen_ns >= st.first_seen_ns && st.last_seen_ns <= after);

    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = xingress::dataplane::cli::monotonic_ns();
    assert_eq!(run(&mut r.dp, &f.data(b"more")).0, XDP_PASS);
    let after = xingress::dataplane::cli::monotonic_ns();
    let later = r.state(&f).unwrap();
    assert_eq!(later.first_seen_ns, st.first_seen_ns);
    assert!(
        later.last_seen_ns + TICK >= before && later.last_seen_ns <= after,
        "last seen {} outside [{before} - a tick, {after}]",
        later.last_seen_ns
    );
    assert!(later.last_seen_ns >= st.last_seen_ns + 40_000_000);
}

/// Runs this test thread on `cpu` only: BPF_PROG_TEST_RUN runs the program
/// on the calling CPU, and each CPU has its own flow cache.
fn on_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t filled by the libc macros, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let rc = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        assert_eq!(rc, 0, "sched_setaffinity({cpu})");
    }
}

/// The CPUs this test may use: the first and the last online one.
fn two_cpus() -> (usize, usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0, n - 1)
}

fn slot_of(f: &Flow) -> u32 {
    match FlowKey::new(
        SocketAddr::new(f.src, f.sport),
        SocketAddr::new(f.dst, f.dport),
    ) {
        FlowKey::V4(k) => flow_cache_slot(&k.words()),
        FlowKey::V6(k) => flow_cache_slot(&k.words()),
    }
}

#[test]
fn established_packets_are_counted_in_the_flow_cache() {
    let mut r = rig(Config::default(), &[]);
    on_cpu(two_cpus().0);
    for src in ["192.0.2.60", "2001:db8:1::60"] {
        let (_, v, _, _, f) = r.open(src, 443, &client_hello(Some("cafe.example.com"), 0));
        assert_eq!(v, VERDICT_L7, "{src}");
        let pkt = f.data(b"0123456789");
        let opened = r.state(&f).unwrap();

        // The first packet after classification goes through FLOWS and arms
        // this CPU's cache; the next ones are counted there.
        let hits = r.stat(Stat::FlowCacheHits);
        assert_eq!(run(&mut r.dp, &pkt).0, XDP_PASS);
        let one = r.state(&f).unwrap();
        let per_packet = one.bytes - opened.bytes;
        assert_eq!(per_packet, 30, "{src}: TCP header and payload");
        for _ in 0..4 {
            assert_eq!(run(&mut r.dp, &pkt).0, XDP_PASS);
        }
        assert_eq!(r.stat(Stat::FlowCacheHits), hits + 4, "{src}");
        // Listings add what the cache holds: the counts are exact.
        let st = r.state(&f).unwrap();
        assert_eq!(st.packets, opened.packets + 5, "{src}");
        assert_eq!(st.bytes, opened.bytes + 5 * per_packet, "{src}");
        let listed =
            r.dp.flows()
                .list()
                .into_iter()
                .find(|l| l.client == SocketAddr::new(f.src, f.sport))
                .expect("listed");
        assert_eq!(listed.value, st, "{src}");

        // Past the flush interval the next packet goes through FLOWS again,
        // which takes over the cached counts.
        std::thread::sleep(std::time::Duration::from_nanos(2 * FLOW_CACHE_FLUSH_NS));
        let hits = r.stat(Stat::FlowCacheHits);
        assert_eq!(run(&mut r.dp, &pkt).0, XDP_PASS);
        assert_eq!(
            r.stat(Stat::FlowCacheHits),
            hits,
            "{src}: flushed, not a hit"
        );
        let st = r.state(&f).unwrap();
        assert_eq!(st.packets, opened.packets + 6, "{src}");
        assert!(st.last_seen_ns > one.last_seen_ns, "{src}");

        // FIN retires the flow and its cache slot: the next packet is untracked.
        assert_eq!(run(&mut r.dp, &f.packet(FIN | ACK, 3000, &[])).0, XDP_PASS);
        assert!(r.state(&f).is_none(), "{src}");
        let (hits, untracked) = (r.stat(Stat::FlowCacheHits), r.stat(Stat::Untracked));
        assert_eq!(run(&mut r.dp, &pkt).0, XDP_PASS);
        assert_eq!(r.stat(Stat::FlowCacheHits), hits, "{src}");
        assert_eq!(r.stat(Stat::Untracked), untracked + 1, "{src}");
    }
}

#[test]
fn a_flow_pushed_out_of_the_cache_keeps_its_counts() {
    let mut r = rig(Config::default(), &[]);
    on_cpu(two_cpus().0);
    let hello = client_hello(Some("cafe.example.com"), 0);
    let (_, _, _, _, a) = r.open("192.0.2.61", 443, &hello);
    let opened = r.state(&a).unwrap();
    for _ in 0..3 {
        run(&mut r.dp, &a.data(b"a"));
    }
    // Another flow of the same cache slot.
    let b = (1024..=u16::MAX)
        .map(|p| Flow::new("192.0.2.62", p, NODE, 443))
        .find(|b| slot_of(b) == slot_of(&a))
        .expect("a port whose flow shares the slot");
    assert_eq!(run(&mut r.dp, &b.syn()).0, XDP_PASS);
    assert_eq!(run(&mut r.dp, &b.data(&hello)).0, XDP_PASS);
    let hits = r.stat(Stat::FlowCacheHits);
    run(&mut r.dp, &b.data(b"b"));
    run(&mut r.dp, &b.data(b"b"));
    assert_eq!(r.stat(Stat::FlowCacheHits), hits + 1, "b took the slot");
    eprintln!(
        "DBG slots {} {} b {:?}",
        slot_of(&a),
        slot_of(&b),
        r.state(&b)
    );
    // a's two cached packets went to its FLOWS entry when b took the slot.
    assert_eq!(r.state(&a).unwrap().packets, opened.packets + 3);
}

#[test]
fn a_reused_port_is_classified_again_on_every_cpu() {
    let mut r = rig(
        Config {
            flags: F_CONFIG_STRICT_HOSTS,
            ..Default::default()
        },
        &[],
    );
    let (cpu_a, cpu_b) = two_cpus();
    on_cpu(cpu_a);
    let f = r.open_cached("192.0.2.63");
    // A new connection on the same 5-tuple, its SYN seen by another CPU,
    // then its ClientHello by the first one: it must be judged, not
    // passed as the cached L7 flow.
    on_cpu(cpu_b);
    assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_PASS);
    on_cpu(cpu_a);
    let (action, out) = run(&mut r.dp, &f.data(&client_hello(Some("nope.test"), 0)));
    assert_eq!(action, XDP_PASS);
    let st = r.state(&f).expect("tracked");
    assert_eq!(st.verdict, VERDICT_REJECT);
    assert_eq!(st.reason, REASON_UNKNOWN_HOST);
    assert_eq!(tcp_flags_v4(&out) & RST, RST, "turned into an RST");
}

#[test]
fn a_newly_denied_source_is_cut_even_when_cached() {
    let mut r = rig(Config::default(), &[]);
    on_cpu(two_cpus().0);
    let f = r.open_cached("198.51.100.70");
    let mut policy = r.policy.clone();
    policy.deny.insert("198.51.100.0/24".parse().unwrap());
    policy.config.flags |= F_CONFIG_DENY;
    r.sync.apply(&policy).unwrap();
    assert_eq!(run(&mut r.dp, &f.data(b"x")).0, XDP_DROP);
}
