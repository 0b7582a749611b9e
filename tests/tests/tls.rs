//! TLS termination end to end: certificates by SNI from Secrets (every key
//! format, wildcard, chain, default, self-signed), HTTP→HTTPS redirects,
//! ALPN h2, resumption, rotation with open connections, WebSocket, gRPC-style
//! streaming to h2c pods, HTTPS pods.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;
use xingress_tests::{
    agent::{Agent, ManifestDir},
    backend::{self, Backend, Mode, STREAM_GAP, STREAM_MESSAGES},
    http1,
    tls_client::{self, fixture, h2_client, leaf, secret_yaml, tls_stream},
};

const CLASS: &str = include_str!("../examples/cafe/ingressclass.yaml");

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn service(dir: &ManifestDir, name: &str, pods: &[&Backend]) {
    dir.write(
        &format!("svc-{name}.yaml"),
        &backend::service_yaml(name, 80, pods),
    );
}

/// An Ingress with one rule per host to `svc`, TLS entries as given, and annotations.
fn ingress(
    name: &str,
    hosts: &[&str],
    svc: &str,
    tls: &[(&str, &[&str])],
    annotations: &[(&str, &str)],
) -> String {
    let mut y =
        format!("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n");
    if !annotations.is_empty() {
        y.push_str("  annotations:\n");
        for (k, v) in annotations {
            y.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    y.push_str("spec:\n");
    if !tls.is_empty() {
        y.push_str("  tls:\n");
        for (secret, hosts) in tls {
            y.push_str(&format!(
                "  - secretName: {secret}\n    hosts: [{}]\n",
                hosts
                    .iter()
                    .map(|h| format!("\"{h}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    y.push_str("  rules:\n");
    for h in hosts {
        y.push_str(&format!(
            "  - host: \"{h}\"\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: 80}}}}}}}}\n"
        ));
    }
    y
}

struct Site {
    dir: ManifestDir,
    _pods: Vec<Backend>,
}

/// Hosts with certificates in every key format, a wildcard, a chain; cafe.example.com.
fn site() -> Site {
    let pods = vec![
        backend::start(local(), "site-1", Mode::Echo).unwrap(),
        backend::start(local(), "site-2", Mode::Echo).unwrap(),
    ];
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    service(&dir, "site", &pods.iter().collect::<Vec<_>>());
    for f in ["pkcs8", "sec1", "rsa", "wild", "chain", "cafe", "default"] {
        dir.write(&format!("secret-{f}.yaml"), &secret_yaml(f, f));
    }
    let hosts = [
        "pkcs8.test",
        "sec1.test",
        "rsa.test",
        "*.wild.test",
        "chain.test",
        "cafe.example.com",
    ];
    let tls: &[(&str, &[&str])] = &[
        ("pkcs8", &["pkcs8.test"]),
        ("sec1", &["sec1.test"]),
        ("rsa", &["rsa.test"]),
        ("wild", &["*.wild.test"]),
        ("chain", &["chain.test"]),
        ("cafe", &["cafe.example.com"]),
    ];
    dir.write("sites.yaml", &ingress("sites", &hosts, "site", tls, &[]));
    Site { dir, _pods: pods }
}

fn ready(dir: &ManifestDir, extra: &[&str]) -> Agent {
    let mut agent = Agent::start_local(&dir.path, extra).unwrap();
    agent.wait_ready().unwrap();
    agent
}

#[test]
fn certificates_are_chosen_by_sni() {
    let site = site();
    let agent = ready(&site.dir, &["--default-ssl-certificate", "default/default"]);
    let config = tls_client::config(&[b"http/1.1"]);
    let cases = [
        ("pkcs8.test", "pkcs8.crt"),
        ("sec1.test", "sec1.crt"),
        ("rsa.test", "rsa.crt"),
        ("a.wild.test", "wild.crt"),
        ("chain.test", "chain.crt"),
        ("cafe.example.com", "cafe.crt"),
        ("x.a.wild.test", "default.crt"),
        ("unknown.test", "default.crt"),
        ("127.0.0.1", "default.crt"),
    ];
    for (sni, cert) in cases {
        let (mut conn, info) =
            tls_client::connect(agent.https, sni, &config).unwrap_or_else(|e| panic!("{sni}: {e}"));
        assert_eq!(
            info.chain[0],
            leaf(&fixture(cert)),
            "SNI {sni} should get {cert}"
        );
        if cert == "chain.crt" {
            assert_eq!(info.chain.len(), 2, "the full chain is served");
        }
        if cert != "default.crt" {
            let r = conn.get(sni, "/x").unwrap();
            assert_eq!(r.status, 200, "{sni}");
            assert_eq!(r.echo_field("x-forwarded-proto").as_deref(), Some("https"));
            assert_eq!(
                r.echo_field("x-forwarded-port"),
                Some(agent.https.port().to_string())
            );
        }
    }
}

#[test]
fn without_a_default_certificate_a_self_signed_one_is_served() {
    let site = site();
    let agent = ready(&site.dir, &[]);
    let (_, info) =
        tls_client::connect(agent.https, "unknown.test", &tls_client::config(&[])).unwrap();
    let fixtures: Vec<Vec<u8>> = ["pkcs8", "sec1", "rsa", "wild", "chain", "cafe", "default"]
        .iter()
        .map(|f| leaf(&fixture(&format!("{f}.crt"))))
        .collect();
    assert!(!fixtures.contains(&info.chain[0]));
    assert!(
        agent
            .logs()
            .contains("generated the self-signed default certificate"),
        "{}",
        agent.logs()
    );
}

#[test]
fn sni_picks_the_certificate_and_host_picks_the_route() {
    let site = site();
    let other = backend::start(local(), "other-1", Mode::Echo).unwrap();
    service(&site.dir, "other", &[&other]);
    site.dir.write(
        "other.yaml",
        &ingress("other", &["other.test"], "other", &[], &[]),
    );
    let agent = ready(&site.dir, &[]);
    let (mut conn, info) =
        tls_client::connect(agent.https, "pkcs8.test", &tls_client::config(&[])).unwrap();
    assert_eq!(info.chain[0], leaf(&fixture("pkcs8.crt")));
    let r = conn.get("other.test", "/").unwrap();
    assert_eq!(r.header("x-pod"), Some("other-1"));
}

#[test]
fn plain_http_to_tls_hosts_is_redirected_308_unless_opted_out() {
    let site = site();
    site.dir.write(
        "plain.yaml",
        &ingress("plain", &["plain.test"], "site", &[], &[]),
    );
    site.dir.write(
        "optout1.yaml",
        &ingress(
            "optout1",
            &["optout1.test"],
            "site",
            &[("pkcs8", &["optout1.test"])],
            &[("nginx.ingress.kubernetes.io/ssl-redirect", "false")],
        ),
    );
    site.dir.write(
        "optout2.yaml",
        &ingress(
            "optout2",
            &["optout2.test"],
            "site",
            &[("pkcs8", &["optout2.test"])],
            &[("xingress.dev/ssl-redirect", "false")],
        ),
    );
    let agent = ready(&site.dir, &[]);
    let r = http1::get(agent.http, "cafe.example.com", "/tea?cup=2").unwrap();
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://cafe.example.com:{}/tea?cup=2", agent.https.port()).as_str())
    );
    let r = http1::get(agent.http, "X.Wild.Test", "/").unwrap();
    assert_eq!(r.status, 308, "wildcard TLS hosts redirect too");
    for host in ["plain.test", "optout1.test", "optout2.test"] {
        assert_eq!(
            http1::get(agent.http, host, "/").unwrap().status,
            200,
            "{host}"
        );
    }
}

#[test]
fn tls_versions_alpn_and_resumption() {
    let site = site();
    let agent = ready(&site.dir, &[]);
    let v13 = tls_client::config(&[b"h2", b"http/1.1"]);
    let (mut conn, first) = tls_client::connect(agent.https, "pkcs8.test", &v13).unwrap();
    // TLS 1.3 session tickets follow the handshake: read a response to receive them.
    assert_eq!(conn.get("pkcs8.test", "/").unwrap().status, 200);
    assert_eq!(first.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(first.alpn.as_deref(), Some(&b"h2"[..]));
    assert!(!first.resumed);
    let (_, second) = tls_client::connect(agent.https, "pkcs8.test", &v13).unwrap();
    assert!(second.resumed, "the second handshake resumes the session");
    let v12 = tls_client::config_versions(&[b"http/1.1"], &[&rustls::version::TLS12]);
    let (mut conn, info) = tls_client::connect(agent.https, "rsa.test", &v12).unwrap();
    assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(conn.get("rsa.test", "/").unwrap().status, 200);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn http2_over_tls() {
    let site = site();
    let agent = ready(&site.dir, &[]);
    runtime().block_on(async {
        let mut send = h2_client(agent.https, "cafe.example.com").await;
        let mut pods = BTreeSet::new();
        for _ in 0..4 {
            let req = http::Request::get("https://cafe.example.com/coffee")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.version(), http::Version::HTTP_2);
            pods.insert(resp.headers()["x-pod"].to_str().unwrap().to_string());
        }
        assert_eq!(pods.len(), 2, "per-request balancing on one h2 connection");
    });
}

#[test]
fn rotation_serves_new_handshakes_and_keeps_open_connections() {
    let site = site();
    site.dir
        .write("secret-rot.yaml", &secret_yaml("rot", "rot-a"));
    site.dir.write(
        "rot.yaml",
        &ingress("rot", &["rot.test"], "site", &[("rot", &["rot.test"])], &[]),
    );
    let agent = ready(&site.dir, &[]);
    let config = tls_client::config(&[b"http/1.1"]);
    let (mut open, info) = tls_client::connect(agent.https, "rot.test", &config).unwrap();
    assert_eq!(info.chain[0], leaf(&fixture("rot-a.crt")));
    assert_eq!(open.get("rot.test", "/").unwrap().status, 200);

    site.dir
        .write("secret-rot.yaml", &secret_yaml("rot", "rot-b"));
    agent.eventually("the rotated certificate", || {
        let fresh = tls_client::config(&[b"http/1.1"]);
        let (_, info) = tls_client::connect(agent.https, "rot.test", &fresh).unwrap();
        info.chain[0] == leaf(&fixture("rot-b.crt"))
    });
    assert_eq!(
        open.get("rot.test", "/").unwrap().status,
        200,
        "the open connection still works"
    );

    // A broken update keeps the last good certificate.
    site.dir.write("secret-rot.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: rot}\ntype: kubernetes.io/tls\nstringData: {tls.crt: garbage, tls.key: garbage}\n");
    agent.eventually("a warning for the broken Secret", || {
        agent.logs().contains("keeping the last good certificate")
    });
    let (_, info) = tls_client::connect(agent.https, "rot.test", &tls_client::config(&[])).unwrap();
    assert_eq!(info.chain[0], leaf(&fixture("rot-b.crt")));
}

#[test]
fn websocket_over_http_and_https_survives_reconfiguration() {
    let pod = backend::start(local(), "ws-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    service(&dir, "ws", &[&pod]);
    dir.write("ws.yaml", &ingress("ws", &["ws.test"], "ws", &[], &[]));
    let agent = ready(&dir, &[]);
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(agent.http).await.unwrap();
        let (mut plain, resp) = tokio_tungstenite::client_async("ws://ws.test/chat", tcp)
            .await
            .expect("ws upgrade through the proxy");
        assert_eq!(resp.status(), 101);
        let tls = tls_stream(agent.https, "ws.test", &[b"http/1.1"]).await;
        let (mut secure, _) = tokio_tungstenite::client_async("wss://ws.test/chat", tls)
            .await
            .expect("wss upgrade");
        echo_round(&mut plain, "hello").await;
        echo_round(&mut secure, "hello").await;
        // Reconfigure (a new Ingress); the streams stay up.
        let gen0 = agent.metric("xingress_snapshot_generation").unwrap();
        dir.write(
            "more.yaml",
            &ingress("more", &["more.test"], "ws", &[], &[]),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while agent.metric("xingress_snapshot_generation").unwrap() == gen0 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        echo_round(&mut plain, "still there").await;
        echo_round(&mut secure, "still there").await;
    });
}

async fn echo_round<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text(text)).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text(format!("ws-1: {text}"))
    );
}

#[test]
fn grpc_streams_to_h2c_pods_with_trailers() {
    let pod = backend::start(local(), "grpc-1", Mode::GrpcStream).unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("secret.yaml", &secret_yaml("cafe", "cafe"));
    service(&dir, "grpc", &[&pod]);
    dir.write(
        "grpc.yaml",
        &ingress(
            "grpc",
            &["cafe.example.com"],
            "grpc",
            &[("cafe", &["cafe.example.com"])],
            &[("nginx.ingress.kubernetes.io/backend-protocol", "GRPC")],
        ),
    );
    let agent = ready(&dir, &[]);
    runtime().block_on(async {
        let mut send = h2_client(agent.https, "cafe.example.com").await;
        let req = http::Request::post("https://cafe.example.com/helloworld.Greeter/SayHello")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let start = Instant::now();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-pod"], "grpc-1");
        assert_eq!(
            resp.headers()["x-request-te"],
            "trailers",
            "TE: trailers reaches the pod"
        );
        assert_eq!(
            resp.headers()["x-request-version"],
            "HTTP/2.0",
            "the pod is spoken to in HTTP/2"
        );
        let mut body = resp.into_body();
        let mut messages = Vec::new();
        let mut first_at = None;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.unwrap();
            if let Some(data) = frame.data_ref() {
                first_at.get_or_insert(start.elapsed());
                messages.push(data.clone());
            } else if let Ok(t) = frame.into_trailers() {
                trailers = Some(t);
            }
        }
        let total = start.elapsed();
        assert_eq!(
            messages.len(),
            STREAM_MESSAGES,
            "one frame per message: streamed, not buffered"
        );
        assert!(
            first_at.unwrap() + STREAM_GAP < total,
            "the first message arrived before the stream ended"
        );
        let t = trailers.expect("trailers are forwarded");
        assert_eq!(t["grpc-status"], "0");
        assert_eq!(t["grpc-message"], "done");
    });
}

#[test]
fn https_pods_are_reached_over_tls() {
    let pod = backend::start_with(
        local(),
        "secure-1",
        Mode::Echo,
        Some(backend::tls_config(
            &fixture("pkcs8.crt"),
            &fixture("pkcs8.key"),
        )),
    )
    .unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    service(&dir, "secure", &[&pod]);
    dir.write(
        "s.yaml",
        &ingress(
            "s",
            &["secure.test"],
            "secure",
            &[],
            &[("xingress.dev/backend-protocol", "HTTPS")],
        ),
    );
    let agent = ready(&dir, &[]);
    let r = http1::get(agent.http, "secure.test", "/over-tls").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-pod"), Some("secure-1"));
    assert_eq!(r.echo_field("uri").as_deref(), Some("/over-tls"));
    let _ = Arc::new(());
}

#[test]
fn secrets_are_never_used_across_namespaces() {
    let site = site();
    // The Secret exists, but in another namespace than the Ingress naming it.
    let other = secret_yaml("xns", "rot-a").replace(
        "metadata: {name: xns}",
        "metadata: {name: xns, namespace: other}",
    );
    assert!(other.contains("namespace: other"));
    site.dir.write("secret-other.yaml", &other);
    site.dir.write(
        "xns.yaml",
        &ingress("xns", &["xns.test"], "site", &[("xns", &["xns.test"])], &[]),
    );
    let agent = ready(&site.dir, &[]);
    let config = tls_client::config(&[b"http/1.1"]);
    let (_, info) = tls_client::connect(agent.https, "xns.test", &config).unwrap();
    assert_ne!(info.chain[0], leaf(&fixture("rot-a.crt")));
    agent.eventually("the missing-Secret warning", || {
        agent.logs().contains("TLS Secret default/xns not found")
    });
}

#[test]
fn client_certificates_are_asked_for_and_verified_per_host() {
    use tls_client::{TestCa, config_with_client_cert};
    let site = site();
    let ca = TestCa::new("xingress test CA");
    let stranger = TestCa::new("some other CA");
    site.dir.write("ca.yaml", &ca.secret_yaml("client-ca"));
    site.dir.write(
        "mtls.yaml",
        &format!(
            "{}---\n{}",
            ingress(
                "mtls",
                &["mtls.test"],
                "site",
                &[("pkcs8", &["mtls.test"])],
                &[
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-secret",
                        "default/client-ca"
                    ),
                    (
                        "nginx.ingress.kubernetes.io/auth-tls-pass-certificate-to-upstream",
                        "true"
                    ),
                ],
            ),
            ingress(
                "optional",
                &["opt.test"],
                "site",
                &[],
                &[
                    ("xingress.dev/auth-tls-secret", "client-ca"),
                    ("xingress.dev/auth-tls-verify-client", "optional"),
                ],
            ),
        ),
    );
    site.dir.write(
        "cn.yaml",
        &ingress(
            "cn",
            &["cn.test"],
            "site",
            &[],
            &[
                ("nginx.ingress.kubernetes.io/auth-tls-secret", "client-ca"),
                (
                    "nginx.ingress.kubernetes.io/auth-tls-match-cn",
                    "^CN=(alice|bob)$",
                ),
            ],
        ),
    );
    site.dir.write(
        "noca.yaml",
        &ingress(
            "noca",
            &["noca.test"],
            "site",
            &[],
            &[("nginx.ingress.kubernetes.io/auth-tls-secret", "missing-ca")],
        ),
    );
    let agent = ready(&site.dir, &[]);
    let good = config_with_client_cert(&[], ca.client("alice"));
    let get = |sni: &str, config: &Arc<rustls::ClientConfig>, host: &str, extra: &str| {
        let (mut conn, _) = tls_client::connect(agent.https, sni, config)?;
        conn.raw(format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes())
    };

    // A certificate the CA signed: served; the pod learns it verified and
    // gets the certificate; what the client claimed itself is dropped.
    let r = get(
        "mtls.test",
        &good,
        "mtls.test",
        "ssl-client-subject-dn: CN=admin\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echo_field("ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    let cert = r.echo_field("ssl-client-cert").expect("ssl-client-cert");
    assert!(
        cert.starts_with("-----BEGIN%20CERTIFICATE-----%0A"),
        "{cert}"
    );
    // The subject the pod is told is the certificate's, not the client's claim.
    assert_eq!(
        r.echo_field("ssl-client-subject-dn").as_deref(),
        Some("CN=alice")
    );
    // A resumed session keeps the certificate it was made with.
    let (mut conn, info) = tls_client::connect(agent.https, "mtls.test", &good).unwrap();
    assert!(info.resumed);
    let r = conn
        .raw(b"GET / HTTP/1.1\r\nHost: mtls.test\r\n\r\n")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.echo_field("ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    // HTTP/2 goes the same way.
    let h2 = config_with_client_cert(&[b"h2"], ca.client("alice"));
    let (_, info) = tls_client::connect(agent.https, "mtls.test", &h2).unwrap();
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));

    // No certificate: 400, as ingress-nginx answers.
    let none = tls_client::config(&[]);
    let r = get("mtls.test", &none, "mtls.test", "").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    // A certificate of another CA: the handshake fails.
    let bad = config_with_client_cert(&[], stranger.client("mallory"));
    assert!(get("mtls.test", &bad, "mtls.test", "").is_err());
    // A handshake for a host that asks nothing cannot reach one that asks:
    // 421, so that the client connects again for that host.
    let r = get("pkcs8.test", &good, "mtls.test", "").unwrap();
    assert_eq!(r.status, 421, "{}", r.text());
    // Plain HTTP to a TLS host is sent to HTTPS first; where it is not,
    // it cannot carry a certificate.
    assert_eq!(
        http1::get(agent.http, "mtls.test", "/").unwrap().status,
        308
    );
    assert_eq!(http1::get(agent.http, "opt.test", "/").unwrap().status, 403);

    // optional: served without a certificate, and the pod is told so.
    let r = get(
        "opt.test",
        &none,
        "opt.test",
        "ssl-client-verify: SUCCESS\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo_field("ssl-client-verify").as_deref(), Some("NONE"));
    // Not passed on there.
    let r = get("opt.test", &good, "opt.test", "").unwrap();
    assert_eq!(
        r.echo_field("ssl-client-verify").as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(r.echo_field("ssl-client-cert"), None);

    // A CA Secret that is missing: no certificate verifies (fail closed).
    assert!(get("noca.test", &good, "noca.test", "").is_err());
    assert_eq!(
        get("noca.test", &none, "noca.test", "").unwrap().status,
        400
    );

    // auth-tls-match-cn: a certificate of the CA whose subject does not
    // match is refused (403), as ingress-nginx.
    let r = get("cn.test", &good, "cn.test", "").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mallory = config_with_client_cert(&[], ca.client("mallory"));
    let r = get("cn.test", &mallory, "cn.test", "").unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("x-pod"), None);

    // Hosts that ask for nothing are unchanged, with or without a certificate.
    for config in [&none, &good] {
        let r = get("pkcs8.test", config, "pkcs8.test", "").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echo_field("ssl-client-verify"), None);
    }
}

#[test]
fn ssl_passthrough_hands_tls_to_the_pod_undecrypted() {
    // The pod terminates TLS with its own certificate.
    let pod = backend::start_with(
        local(),
        "pass-1",
        Mode::Echo,
        Some(backend::tls_config(
            &fixture("rsa.crt"),
            &fixture("rsa.key"),
        )),
    )
    .unwrap();
    let plain_pod = backend::start(local(), "plain-1", Mode::Echo).unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    dir.write("secret.yaml", &secret_yaml("cafe-secret", "cafe"));
    service(&dir, "pass", &[&pod]);
    service(&dir, "plain", &[&plain_pod]);
    dir.write(
        "pass.yaml",
        &ingress(
            "pass",
            &["pass.test"],
            "pass",
            &[],
            &[("nginx.ingress.kubernetes.io/ssl-passthrough", "true")],
        ),
    );
    dir.write(
        "cafe.yaml",
        &ingress(
            "cafe",
            &["cafe.example.com"],
            "plain",
            &[("cafe-secret", &["cafe.example.com"])],
            &[],
        ),
    );
    let agent = ready(&dir, &[]);
    let config = tls_client::config(&[b"http/1.1"]);

    // The pod's certificate comes back, and the pod answers: the agent
    // only read the server name.
    let (mut conn, info) = tls_client::connect(agent.https, "pass.test", &config).unwrap();
    assert_eq!(info.chain[0], leaf(&fixture("rsa.crt")));
    let r = conn.get("pass.test", "/inside").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-pod"), Some("pass-1"));
    // No X-Forwarded-For: nobody but the client wrote this request.
    assert_eq!(r.echo_field("x-forwarded-for"), None);
    // Several requests on the spliced connection.
    assert_eq!(conn.get("pass.test", "/again").unwrap().status, 200);
    assert_eq!(
        agent.metric("xingress_passthrough_connections_total"),
        Some(1.0)
    );

    // A ClientHello that arrives in two segments (as large post-quantum
    // key shares make it) is waited for, then passed through whole.
    {
        use std::io::{Read, Write};
        let name = rustls::pki_types::ServerName::try_from("pass.test").unwrap();
        let mut tls = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut hello = Vec::new();
        tls.write_tls(&mut hello).unwrap();
        let mut tcp = std::net::TcpStream::connect(agent.https).unwrap();
        tcp.set_nodelay(true).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(&hello[..hello.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        tcp.write_all(&hello[hello.len() / 2..]).unwrap();
        while tls.is_handshaking() {
            tls.complete_io(&mut tcp).unwrap();
        }
        assert_eq!(
            tls.peer_certificates().unwrap()[0].as_ref(),
            &leaf(&fixture("rsa.crt"))[..]
        );
        let mut stream = rustls::Stream::new(&mut tls, &mut tcp);
        stream
            .write_all(b"GET /split HTTP/1.1\r\nHost: pass.test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("uri: /split\n"), "{answer}");
    }
    assert_eq!(
        agent.metric("xingress_passthrough_connections_total"),
        Some(2.0)
    );

    // Other hosts on the same listener are terminated as usual.
    let (mut conn, info) = tls_client::connect(agent.https, "cafe.example.com", &config).unwrap();
    assert_eq!(info.chain[0], leaf(&fixture("cafe.crt")));
    let r = conn.get("cafe.example.com", "/").unwrap();
    assert_eq!(r.header("x-pod"), Some("plain-1"));
    assert!(r.echo_field("x-forwarded-for").is_some());
    assert_eq!(
        agent.metric("xingress_passthrough_connections_total"),
        Some(2.0)
    );

    // Turned off, the host is terminated by the agent again.
    dir.replace(
        "pass.yaml",
        &ingress(
            "pass",
            &["pass.test"],
            "pass",
            &[],
            &[("nginx.ingress.kubernetes.io/ssl-passthrough", "false")],
        ),
    );
    agent.eventually("pass-through off", || {
        tls_client::connect(agent.https, "pass.test", &config)
            .is_ok_and(|(_, info)| info.chain[0] != leaf(&fixture("rsa.crt")))
    });
}

#[test]
fn proxy_ssl_verify_checks_https_pods_and_shows_a_client_certificate() {
    use xingress_tests::tls_client::TestCa;
    let ca = TestCa::new("pods CA");
    let other_ca = TestCa::new("someone else");
    let pod_cert = ca.server(&["pod.internal", "secure.default.svc"]);
    let pod = backend::start_with(
        local(),
        "secure-1",
        Mode::Echo,
        Some(backend::tls_config(
            pod_cert.0.as_bytes(),
            pod_cert.1.as_bytes(),
        )),
    )
    .unwrap();
    // A pod that only talks to clients with a certificate from `ca`.
    let strict_pod = backend::start_with(
        local(),
        "strict-1",
        Mode::Echo,
        Some(TestCa::server_requiring_clients(&pod_cert, &ca)),
    )
    .unwrap();
    let dir = ManifestDir::new();
    dir.write("class.yaml", CLASS);
    service(&dir, "secure", &[&pod]);
    service(&dir, "strict", &[&strict_pod]);
    dir.write("ca.yaml", &ca.secret_yaml("pods-ca"));
    dir.write("other.yaml", &other_ca.secret_yaml("other-ca"));
    let (client_crt, client_key) = ca.client_pem("xingress");
    let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
    dir.write(
        "client.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: with-client\nstringData:\n  ca.crt: |\n{}  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&ca.pem()),
            indent(&client_crt),
            indent(&client_key)
        ),
    );
    let p = "nginx.ingress.kubernetes.io/";
    let verified = |name: &str, svc: &str, extra: &[(&str, &str)]| {
        let mut a = vec![
            (format!("{p}backend-protocol"), "HTTPS".to_string()),
            (format!("{p}proxy-ssl-verify"), "on".to_string()),
        ];
        a.extend(
            extra
                .iter()
                .map(|(k, v)| (format!("{p}{k}"), v.to_string())),
        );
        let a: Vec<(&str, &str)> = a.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ingress(name, &[&format!("{name}.test")], svc, &[], &a) + "---\n"
    };
    let ingresses = [
        verified(
            "named",
            "secure",
            &[
                ("proxy-ssl-secret", "pods-ca"),
                ("proxy-ssl-name", "pod.internal"),
            ],
        ),
        // No proxy-ssl-name: the Service's name, secure.default.svc.
        verified("svcname", "secure", &[("proxy-ssl-secret", "pods-ca")]),
        verified(
            "wrongname",
            "secure",
            &[
                ("proxy-ssl-secret", "pods-ca"),
                ("proxy-ssl-name", "other.internal"),
            ],
        ),
        verified(
            "wrongca",
            "secure",
            &[
                ("proxy-ssl-secret", "other-ca"),
                ("proxy-ssl-name", "pod.internal"),
            ],
        ),
        verified(
            "mtls",
            "strict",
            &[
                ("proxy-ssl-secret", "with-client"),
                ("proxy-ssl-name", "pod.internal"),
            ],
        ),
        verified(
            "nocert",
            "strict",
            &[
                ("proxy-ssl-secret", "pods-ca"),
                ("proxy-ssl-name", "pod.internal"),
            ],
        ),
    ]
    .concat();
    dir.write("ing.yaml", &ingresses);
    let agent = ready(&dir, &[]);
    let status = |host: &str| {
        let r = http1::get(agent.http, host, "/").unwrap();
        (r.status, r.header("x-pod").map(str::to_string))
    };
    assert_eq!(status("named.test"), (200, Some("secure-1".into())));
    assert_eq!(status("svcname.test"), (200, Some("secure-1".into())));
    // A certificate for another name, or from another CA: never reached.
    assert_eq!(status("wrongname.test").0, 502);
    assert_eq!(status("wrongca.test").0, 502);
    // The Secret's tls.crt/tls.key is the client certificate the pod asks for.
    assert_eq!(status("mtls.test"), (200, Some("strict-1".into())));
    assert_eq!(status("nocert.test").0, 502);
}
