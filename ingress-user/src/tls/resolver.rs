//! rustls plumbing: the SNI resolver over the live snapshot, and the server config.

use std::sync::Arc;

use rustls::{
    DigitallySignedStruct, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::{ClientHello, ResolvesServerCert, danger::ClientCertVerifier},
    sign::CertifiedKey,
};

use super::provider;
use crate::{
    model::{HOST_BUF_LEN, normalize_host},
    snapshot::SnapshotCell,
};

/// Chooses the certificate of each handshake from the snapshot live at that moment.
#[derive(Debug)]
pub struct SniResolver {
    snapshots: Arc<SnapshotCell>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snap = self.snapshots.load();
        let mut buf = [0u8; HOST_BUF_LEN];
        let sni = hello
            .server_name()
            .and_then(|n| normalize_host(n, &mut buf));
        snap.tls.lookup(sni).cloned()
    }
}

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1, session resumption by tickets
/// and by session id.
pub fn server_config(snapshots: Arc<SnapshotCell>) -> Result<Arc<ServerConfig>, rustls::Error> {
    finish(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(SniResolver { snapshots })),
    )
}

/// The same, asking clients for a certificate that `verifier` checks; its
/// own ticketer and session cache.
pub fn server_config_with(
    snapshots: Arc<SnapshotCell>,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    finish(
        ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SniResolver { snapshots })),
    )
}

fn finish(mut config: ServerConfig) -> Result<Arc<ServerConfig>, rustls::Error> {
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// Accepts any server certificate chain but still verifies the handshake
/// signatures against it. Pods present self-signed certificates for their
/// IPs, so like ingress-nginx (proxy_ssl_verify off) the chain is not
/// checked; tests use it to see which certificate a server presents.
#[derive(Debug)]
pub struct UnverifiedChain(WebPkiSupportedAlgorithms);

impl UnverifiedChain {
    pub fn new() -> Self {
        Self(provider().signature_verification_algorithms)
    }
}

impl Default for UnverifiedChain {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerCertVerifier for UnverifiedChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}
