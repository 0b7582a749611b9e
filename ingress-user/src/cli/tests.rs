//! Tests of the command line: flags parsed and validated into a Config, and the refusals.

use clap::Parser;

use super::*;

fn run_args(extra: &[&str]) -> Result<Config, ConfigError> {
    let dir = std::env::temp_dir();
    let mut argv = vec!["xingress", "run", "--manifests", dir.to_str().unwrap()];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("parses").command {
        Command::Run(args) => args.into_config(),
        other => panic!("not run: {other:?}"),
    }
}

#[test]
fn defaults_follow_the_cli_contract() {
    let c = run_args(&[]).unwrap();
    assert_eq!(c.http_addr, "0.0.0.0:80".parse().unwrap());
    assert_eq!(c.admin_addr, "127.0.0.1:10254".parse().unwrap());
    assert_eq!(c.classes.ingress_class, "xingress");
    assert_eq!(c.classes.controller_name, "xingress.dev/controller");
    assert!(c.xdp.is_none());
}

#[test]
fn status_options() {
    let c = run_args(&[
        "--publish-address",
        "192.0.2.1,2001:db8::1",
        "--pod-name",
        "xingress-abc",
        "--pod-namespace",
        "xingress",
    ])
    .unwrap();
    assert_eq!(
        c.status.addresses,
        vec![
            "192.0.2.1".parse::<std::net::IpAddr>().unwrap(),
            "2001:db8::1".parse().unwrap()
        ]
    );
    assert_eq!(c.status.identity, "xingress-abc");
    assert_eq!(c.status.lease_namespace, "xingress");
    assert_eq!(c.status.lease_name, "xingress-leader");
    assert_eq!(c.status.lease_duration, Duration::from_secs(15));
    // Without a pod name every agent still gets a distinct identity.
    let d = run_args(&[]).unwrap();
    assert!(
        d.status
            .identity
            .ends_with(&format!("-{}", std::process::id()))
    );
    assert!(d.status.addresses.is_empty());
    assert!(
        Cli::try_parse_from(["xingress", "run", "--publish-address", "node-1"]).is_err(),
        "a publish address must be an IP"
    );
    let err = run_args(&["--lease-duration", "0"]).unwrap_err();
    assert!(err.to_string().contains("--lease-duration"), "{err}");
}

#[test]
fn xdp_policy_flags() {
    for flags in [
        &["--xdp-deny-cidr", "10.0.0.0/8"][..],
        &["--xdp-syn-rate", "100"],
        &["--xdp-strict-hosts"],
    ] {
        let err = run_args(flags).unwrap_err();
        assert!(
            err.to_string().contains("needs --xdp-iface"),
            "{flags:?}: {err}"
        );
    }
    let c = run_args(&[
        "--xdp-iface",
        "eth0",
        "--xdp-deny-cidr",
        "10.0.0.0/8,2001:db8::/32",
        "--xdp-syn-rate",
        "50",
        "--xdp-strict-hosts",
        "--xdp-pin-path",
        "/sys/fs/bpf/x1",
    ])
    .unwrap();
    let x = c.xdp.unwrap();
    assert_eq!(x.policy.deny.len(), 2);
    assert_eq!(x.policy.syn_rate, 50);
    assert!(x.policy.strict_hosts);
    assert_eq!(x.pin_path, std::path::PathBuf::from("/sys/fs/bpf/x1"));
    assert!(run_args(&["--xdp-iface", "eth0", "--xdp-deny-cidr", "10.0.0.0/40"]).is_err());
}

#[test]
fn without_manifests_the_source_is_the_cluster() {
    let cli = Cli::try_parse_from(["xingress", "run", "--kubeconfig", "/etc/kube.conf"]).unwrap();
    let Command::Run(args) = cli.command else {
        panic!()
    };
    let c = args.into_config().unwrap();
    assert!(
        matches!(c.source, Source::Cluster { kubeconfig: Some(ref p) } if p.to_str() == Some("/etc/kube.conf"))
    );
    let cli = Cli::try_parse_from(["xingress", "run"]).unwrap();
    let Command::Run(args) = cli.command else {
        panic!()
    };
    assert!(matches!(
        args.into_config().unwrap().source,
        Source::Cluster { kubeconfig: None }
    ));
}

#[test]
fn default_backend_must_be_namespace_slash_name() {
    let c = run_args(&[
        "--default-backend-service",
        "kube-system/default-http-backend",
    ])
    .unwrap();
    assert_eq!(
        c.default_backend.unwrap().to_string(),
        "kube-system/default-http-backend"
    );
    assert!(run_args(&["--default-backend-service", "nonamespace"]).is_err());
}

#[test]
fn missing_manifest_dir_is_an_error() {
    let cli =
        Cli::try_parse_from(["xingress", "run", "--manifests", "/nonexistent/xingress"]).unwrap();
    let Command::Run(args) = cli.command else {
        panic!()
    };
    assert!(matches!(
        args.into_config(),
        Err(ConfigError::ManifestDir(_))
    ));
}

#[test]
fn xdp_flags_build_xdp_config() {
    let c = run_args(&["--xdp-iface", "eth0", "--xdp-mode", "native"]).unwrap();
    let x = c.xdp.unwrap();
    assert_eq!(x.iface, "eth0");
    assert_eq!(x.mode, XdpMode::Native);
}

#[test]
fn tls_flags() {
    let c = run_args(&[
        "--https-addr",
        "127.0.0.1:8443",
        "--default-ssl-certificate",
        "ns/cert",
    ])
    .unwrap();
    assert_eq!(c.https_addr, "127.0.0.1:8443".parse().unwrap());
    assert_eq!(c.default_certificate.unwrap().to_string(), "ns/cert");
    assert_eq!(
        run_args(&[]).unwrap().https_addr,
        "0.0.0.0:443".parse().unwrap()
    );
    assert!(run_args(&["--default-ssl-certificate", "nons"]).is_err());
}

#[test]
fn client_timeouts() {
    let c = run_args(&[]).unwrap();
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(30));
    assert_eq!(c.limits.client_send_timeout, Duration::from_secs(60));
    let c = run_args(&["--client-send-timeout", "5"]).unwrap();
    assert_eq!(c.limits.client_send_timeout, Duration::from_secs(5));
    assert!(matches!(
        run_args(&["--client-send-timeout", "0"]),
        Err(ConfigError::Invalid {
            flag: "--client-send-timeout",
            ..
        })
    ));
}
