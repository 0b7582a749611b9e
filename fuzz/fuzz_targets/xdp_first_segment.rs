#![no_main]
//! The XDP program's SNI and Host parsers, in the kernel: the fuzz input is
//! the first payload segment of a new flow to the HTTPS or HTTP listener,
//! run through BPF_PROG_TEST_RUN (needs root and the embedded object).
//! Invariants: the packet passes, the flow gets a valid verdict, and a flow
//! is never attributed to a host whose name is not in the segment.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Mutex, OnceLock},
};

use ingress_common::{
    Config, F_CONFIG_STRICT_HOSTS, F_LISTENER_HTTP, F_LISTENER_TLS, VERDICT_L7, VERDICT_REJECT,
    VERDICT_UNDECIDED,
};
use xingress::dataplane::{Dataplane, Policy, PolicySync};
use xingress_tests::xdp::{self, Flow, XDP_PASS, run};

struct Rig {
    dp: Dataplane,
    sync: PolicySync,
    port: u16,
}

/// Where the rig's maps are pinned, for `unpin`.
static PIN_DIR: OnceLock<std::path::PathBuf> = OnceLock::new();

/// libFuzzer ends the run with exit(), which drops no static: the rig's
/// Dataplane never unpins its maps. This exit hook does.
extern "C" fn unpin() {
    if let Some(dir) = PIN_DIR.get() {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        let _ = std::fs::remove_dir(dir);
    }
}

fn rig() -> &'static Mutex<Rig> {
    static RIG: OnceLock<Mutex<Rig>> = OnceLock::new();
    RIG.get_or_init(|| {
        xdp::require_xdp("BPF_PROG_TEST_RUN");
        let dir = PIN_DIR.get_or_init(xdp::unique_pin_path);
        let mut dp = Dataplane::load(dir).expect("load the XDP program");
        // SAFETY: registers a plain function; atexit has no other effect.
        unsafe { libc::atexit(unpin) };
        dp.set_listeners(&[(443, F_LISTENER_TLS), (80, F_LISTENER_HTTP)])
            .unwrap();
        let mut sync =
            PolicySync::new(dp.take_policy().expect("policy maps")).with_flows(dp.flows());
        let policy = Policy {
            hosts: BTreeMap::from([
                ("cafe.example.com".to_string(), None),
                ("*.wild.test".to_string(), None),
                (
                    "secure.test".to_string(),
                    Some(vec!["192.0.2.0/24".parse().unwrap()]),
                ),
            ]),
            deny: Default::default(),
            config: Config {
                flags: F_CONFIG_STRICT_HOSTS,
                ..Default::default()
            },
        };
        sync.apply(&policy).unwrap();
        Mutex::new(Rig {
            dp,
            sync,
            port: 1024,
        })
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    if payload.is_empty() || payload.len() > 1400 {
        return;
    }
    let mut r = rig().lock().unwrap();
    r.port = r.port.checked_add(1).unwrap_or(1024);
    let dport = if selector & 1 == 0 { 443 } else { 80 };
    let (src, dst) = if selector & 2 == 0 {
        ("198.51.100.7", "198.18.0.1")
    } else {
        ("2001:db8:7::7", "2001:db8:ff::1")
    };
    let f = Flow::new(src, r.port, dst, dport);
    assert_eq!(run(&mut r.dp, &f.syn()).0, XDP_PASS);
    let (action, _) = run(&mut r.dp, &f.data(payload));
    assert_eq!(action, XDP_PASS);
    let st =
        r.dp.flows()
            .get(
                SocketAddr::new(f.src, f.sport),
                SocketAddr::new(f.dst, f.dport),
            )
            .expect("the flow is tracked");
    assert!(
        matches!(st.verdict, VERDICT_L7 | VERDICT_REJECT | VERDICT_UNDECIDED),
        "verdict {}",
        st.verdict
    );
    if st.host_id != 0 {
        let name = r.sync.names().lock().unwrap().get(&st.host_id).cloned();
        let name = name.expect("a host id the policy gave out");
        let needle = name
            .trim_start_matches("*.")
            .as_bytes()
            .to_ascii_lowercase();
        let hay = payload.to_ascii_lowercase();
        assert!(
            hay.windows(needle.len()).any(|w| w == needle.as_slice()),
            "flow attributed to {name} which is not in the segment"
        );
    }
});
