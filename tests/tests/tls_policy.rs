//! The controller ConfigMap's TLS policy (issue 19, part 2):
//! `ssl-protocols` and `ssl-ciphers` decide what handshakes offer, live,
//! and what rustls cannot offer is named in the log.

use std::{net::SocketAddr, sync::Arc};

use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Mode, service_yaml},
    tls_client,
};

const INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations: {kubernetes.io/ingress.class: xingress}\nspec:\n  rules:\n  - host: app.test\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: app, port: {number: 80}}}}\n---\n";

fn config(data: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: x}}\ndata:\n{data}")
}

/// A TLS 1.2 client offering only the suites named.
fn tls12_with(suites: &[&str]) -> Arc<rustls::ClientConfig> {
    let mut provider = (*xingress::tls::provider()).clone();
    provider
        .cipher_suites
        .retain(|s| suites.contains(&format!("{:?}", s.suite()).as_str()));
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(xingress::tls::UnverifiedChain::new()))
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

#[test]
fn ssl_protocols_and_ciphers_decide_the_handshake_live() {
    let app = backend::start(SocketAddr::from(([127, 0, 0, 1], 0)), "app-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write(
        "all.yaml",
        &format!("{}{INGRESS}", service_yaml("app", 80, &[&app])),
    );
    dir.write("config.yaml", &config("  ssl-protocols: TLSv1.1 TLSv1.3\n"));
    let mut agent = Agent::start_local(&dir.path, &["--configmap", "x/c"]).unwrap();
    agent.wait_ready().unwrap();
    let v12 = tls_client::config_versions(&[b"http/1.1"], &[&rustls::version::TLS12]);
    let v13 = tls_client::config_versions(&[b"http/1.1"], &[&rustls::version::TLS13]);
    let handshake = |c: &Arc<rustls::ClientConfig>| tls_client::connect(agent.https, "app.test", c);

    // TLS 1.3 only; TLSv1.1 named in the log as not offered.
    assert!(handshake(&v12).is_err(), "TLS 1.2 refused");
    let (mut conn, info) = handshake(&v13).unwrap();
    assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(conn.get("app.test", "/").unwrap().status, 200);
    assert!(
        agent
            .logs()
            .contains("key ssl-protocols: TLSv1.1 cannot be offered"),
        "{}",
        agent.logs()
    );

    // TLS 1.2 with the AES-256 suites only, live.
    dir.replace(
        "config.yaml",
        &config(
            "  ssl-protocols: TLSv1.2\n  ssl-ciphers: ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES256-GCM-SHA384\n",
        ),
    );
    agent.eventually("TLS 1.2 offered", || handshake(&v12).is_ok());
    assert!(handshake(&v13).is_err(), "TLS 1.3 refused now");
    let aes128 = tls12_with(&[
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ]);
    assert!(
        handshake(&aes128).is_err(),
        "AES-128 suites are not offered"
    );
    let (_, info) = handshake(&v12).unwrap();
    assert!(
        info.suite
            .as_deref()
            .is_some_and(|s| s.contains("AES_256_GCM")),
        "{:?}",
        info.suite
    );
    assert!(
        agent.logs().contains("left out: DHE-RSA-AES256-GCM-SHA384"),
        "{}",
        agent.logs()
    );

    // A list of nothing rustls offers is refused: the defaults stay.
    dir.replace("config.yaml", &config("  ssl-ciphers: HIGH:!aNULL\n"));
    agent.eventually("defaults again", || handshake(&v13).is_ok());
    assert!(handshake(&aes128).is_ok());
    assert!(
        agent
            .logs()
            .contains("key ssl-ciphers: \"HIGH:!aNULL\" names no TLS 1.2 suite"),
        "{}",
        agent.logs()
    );
}
