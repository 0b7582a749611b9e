//! TLS clients for tests: they accept any certificate and report which one
//! the server presented, so tests can check certificate selection.

use std::{
    io,
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::Duration,
};

use rustls::{
    ClientConfig, ClientConnection, StreamOwned,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject},
};

use crate::http1::Conn;

/// What the handshake showed.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    pub alpn: Option<Vec<u8>>,
    pub resumed: bool,
    pub version: Option<rustls::ProtocolVersion>,
    /// The negotiated cipher suite, as rustls names it.
    pub suite: Option<String>,
}

/// A client config offering `alpn`; share it between connections to resume sessions.
pub fn config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    config_versions(alpn, rustls::DEFAULT_VERSIONS)
}

pub fn config_versions(
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(xingress::tls::provider())
        .with_protocol_versions(versions)
        .expect("supported versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(xingress::tls::UnverifiedChain::new()))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// Handshakes with `addr` sending `sni` (an IP address sends no SNI).
pub fn connect(
    addr: SocketAddr,
    sni: &str,
    config: &Arc<ClientConfig>,
) -> io::Result<(Conn, TlsInfo)> {
    let name =
        ServerName::try_from(sni.to_string()).map_err(|e| io::Error::other(e.to_string()))?;
    let mut tls = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    let info = TlsInfo {
        chain: tls
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect(),
        alpn: tls.alpn_protocol().map(<[u8]>::to_vec),
        resumed: matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed)),
        version: tls.protocol_version(),
        suite: tls
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
    };
    Ok((Conn::over(Box::new(StreamOwned::new(tls, tcp))), info))
}

/// The DER of the first certificate of a PEM file.
pub fn leaf(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .expect("a certificate")
        .expect("valid PEM")
        .as_ref()
        .to_vec()
}

/// A fixture file of tests/fixtures/tls.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A kubernetes.io/tls Secret manifest for fixture `name` (name.crt, name.key).
pub fn secret_yaml(secret: &str, fixture_name: &str) -> String {
    use std::fmt::Write;
    let b64 = |bytes: &[u8]| {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {secret}}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&fixture(&format!("{fixture_name}.crt"))),
        b64(&fixture(&format!("{fixture_name}.key")))
    );
    s
}

/// A TLS stream (tokio) to `addr` with this SNI, offering `alpn`.
pub async fn tls_stream(
    addr: SocketAddr,
    sni: &str,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(config(alpn));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(sni.to_string()).unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// An HTTP/2 client over TLS (ALPN h2) to `addr` with this SNI.
pub async fn h2_client(
    addr: SocketAddr,
    sni: &str,
) -> hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let tls = tls_stream(addr, sni, &[b"h2"]).await;
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    send
}

/// A test certificate authority for client certificates (`auth-tls-*`).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM (a Secret's `ca.crt`).
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client certificate for `cn` signed by this CA: chain and key.
    pub fn client(&self, cn: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (cert, key) = self.client_cert(cn);
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    fn client_cert(&self, cn: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::KeyPair::generate().expect("client key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        (cert, key)
    }

    /// A server certificate for `names` (DNS SANs) signed by this CA: PEM
    /// chain and key.
    pub fn server(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("params");
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A client certificate for `cn` signed by this CA: PEM chain and key.
    pub fn client_pem(&self, cn: &str) -> (String, String) {
        let (cert, key) = self.client_cert(cn);
        (cert.pem(), key.serialize_pem())
    }

    /// A server config for a pod with this certificate that requires a
    /// client certificate signed by `clients`.
    pub fn server_requiring_clients(
        (cert_pem, key_pem): &(String, String),
        clients: &TestCa,
    ) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("certificate");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(clients.issuer.der().clone()).expect("CA");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            xingress::tls::provider(),
        )
        .build()
        .expect("client verifier");
        let mut c = rustls::ServerConfig::builder_with_provider(xingress::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("certificate and key");
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// A Secret of `name` holding this CA as `ca.crt`.
    pub fn secret_yaml(&self, name: &str) -> String {
        let pem: String = self.pem().lines().map(|l| format!("    {l}\n")).collect();
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  ca.crt: |\n{pem}---\n"
        )
    }
}

/// A client config (any server certificate accepted) presenting a client
/// certificate.
pub fn config_with_client_cert(
    alpn: &[&[u8]],
    (chain, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Arc<ClientConfig> {
    let mut c = ClientConfig::builder_with_provider(xingress::tls::provider())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .expect("supported versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(xingress::tls::UnverifiedChain::new()))
        .with_client_auth_cert(chain, key)
        .expect("client certificate and key");
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}
