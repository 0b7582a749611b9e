//! The agent process: manifest changes applied live, health and readiness,
//! graceful exit, refused flags, and request metrics.

use std::time::Duration;

use xingress_tests::http1::{self, Conn};

use crate::common::{cafe, ready_agent};

#[test]
fn manifest_changes_apply_without_restart_or_dropping_connections() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    let mut conn = Conn::connect(agent.http).unwrap();
    assert_eq!(conn.get("cafe.example.com", "/tea").unwrap().status, 200);
    assert_eq!(conn.get("juice.example.com", "/").unwrap().status, 404);
    let generation = agent.metric("xingress_snapshot_generation").unwrap();

    // A new Ingress appears, and a broken file lands next to it.
    cafe.dir.write("juice.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: juice}\nspec:\n  rules:\n  - host: juice.example.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: coffee-svc, port: {number: 80}}}}\n");
    cafe.dir.write("broken.yaml", "kind: [this is not yaml\n");
    agent.eventually("the new route", || {
        conn.get("juice.example.com", "/").unwrap().status == 200
    });
    let r = conn.get("juice.example.com", "/").unwrap();
    assert!(r.header("x-pod").unwrap().starts_with("coffee"));
    assert!(agent.metric("xingress_snapshot_generation").unwrap() > generation);
    // The agent says how long the reload took, by phase.
    for phase in ["read", "build"] {
        let s = agent
            .metric(&format!(
                "xingress_config_reload_seconds{{phase=\"{phase}\"}}"
            ))
            .unwrap_or_else(|| panic!("no {phase} time on /metrics"));
        assert!(s > 0.0 && s < 10.0, "{phase}: {s} s");
    }
    // The same keep-alive connection still serves the old routes.
    assert_eq!(conn.get("cafe.example.com", "/tea").unwrap().status, 200);
    assert!(agent.metric("xingress_config_warnings").unwrap() >= 1.0);
    assert!(
        agent.logs().contains("broken.yaml"),
        "the bad file is named in the log"
    );
}

#[test]
fn readiness_health_and_graceful_exit() {
    let cafe = cafe();
    let mut agent = ready_agent(&cafe.dir, &[]);
    assert_eq!(
        http1::get(agent.admin, "localhost", "/healthz")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        http1::get(agent.admin, "localhost", "/readyz")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        agent.metric("xingress_xdp_attached"),
        Some(0.0),
        "XDP was not requested"
    );
    let status = agent.stop(Duration::from_secs(15)).unwrap();
    assert!(
        status.success(),
        "exit on SIGTERM: {status}\n{}",
        agent.logs()
    );
    assert!(agent.logs().contains("shutting down"));
}

#[test]
fn invalid_flags_exit_64_with_a_message() {
    for (flags, message) in [
        (
            &["--client-header-timeout", "0"][..],
            "clients need at least a second",
        ),
        (&["--xdp-strict-hosts"], "needs --xdp-iface"),
        (
            &["--xdp-iface", "eth0", "--xdp-deny-cidr", "10.0.0.0/99"],
            "prefix length",
        ),
    ] {
        let out = std::process::Command::new(xingress_tests::agent::xingress_bin())
            .args(["run", "--manifests", "/"])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}

#[test]
fn requests_are_counted_per_ingress_host() {
    let cafe = cafe();
    let agent = ready_agent(&cafe.dir, &[]);
    for _ in 0..3 {
        assert_eq!(
            http1::get(agent.http, "cafe.example.com", "/tea")
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        http1::get(agent.http, "cafe.example.com", "/none")
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        http1::get(agent.http, "evil\"host.test", "/")
            .unwrap()
            .status,
        404
    );
    let get = |s: &str| agent.metric(s).unwrap_or(-1.0);
    assert_eq!(
        get("xingress_requests_total{class=\"2xx\",host=\"cafe.example.com\"}"),
        3.0
    );
    // No rule matched: counted under "*", never under a client-chosen host.
    assert_eq!(
        get("xingress_requests_total{class=\"4xx\",host=\"*\"}"),
        2.0
    );
    let text = http1::get(agent.admin, "localhost", "/metrics")
        .unwrap()
        .text();
    assert!(
        !text.contains("evil"),
        "client Host values never become labels"
    );
    assert_eq!(get("xingress_upstream_response_seconds_count"), 3.0);
}
