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
use crate::model::{HOST_BUF_LEN, normalize_host, tls_policy::TlsPolicy};

/// What handshakes read of the live configuration, at the moment of each:
/// the snapshot cell implements it (TLS does not know the snapshot).
pub trait LiveTls: Send + Sync + std::fmt::Debug {
    /// The certificate for a normalised server name (`None`: no SNI).
    fn certificate(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>>;
    /// The ConfigMap's TLS policy (`ssl-protocols`, ...), if it sets one.
    fn tls_policy(&self) -> Option<Arc<TlsPolicy>>;
}

/// Chooses the certificate of each handshake from the configuration live at that moment.
#[derive(Debug)]
pub struct SniResolver {
    live: Arc<dyn LiveTls>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut buf = [0u8; HOST_BUF_LEN];
        let sni = hello
            .server_name()
            .and_then(|n| normalize_host(n, &mut buf));
        self.live.certificate(sni)
    }
}

/// TLS 1.2 and 1.3, ALPN h2 and http/1.1, session resumption by tickets
/// and by session id.
pub fn server_config(live: Arc<dyn LiveTls>) -> Result<Arc<ServerConfig>, rustls::Error> {
    server_config_for(live, None, None)
}

/// The same under the ConfigMap's TLS policy (`ssl-protocols`,
/// `ssl-ciphers`, `ssl-session-tickets`; `None`: the defaults), asking
/// clients for a certificate that `verifier` checks if there is one (its
/// own ticketer and session cache then).
pub fn server_config_for(
    live: Arc<dyn LiveTls>,
    policy: Option<&TlsPolicy>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = match policy.and_then(|p| p.suites.as_ref()) {
        None => provider(),
        Some(names) => {
            let mut p = (*provider()).clone();
            p.cipher_suites
                .retain(|s| names.iter().any(|n| *n == format!("{:?}", s.suite())));
            Arc::new(p)
        }
    };
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if policy.is_none_or(|p| p.tls13) {
        versions.push(&rustls::version::TLS13);
    }
    if policy.is_none_or(|p| p.tls12) {
        versions.push(&rustls::version::TLS12);
    }
    let builder =
        ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver { live }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    if policy.is_none_or(|p| p.tickets) {
        config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_shapes_the_server_config() {
        /// No certificates, no policy: only the config's shape is looked at.
        #[derive(Debug)]
        struct Nothing;
        impl LiveTls for Nothing {
            fn certificate(&self, _: Option<&str>) -> Option<Arc<CertifiedKey>> {
                None
            }
            fn tls_policy(&self) -> Option<Arc<TlsPolicy>> {
                None
            }
        }
        let cell = Arc::new(Nothing);
        let default = server_config_for(cell.clone(), None, None).unwrap();
        assert!(default.ticketer.enabled());
        assert_eq!(default.crypto_provider().cipher_suites.len(), 9);
        let mut policy = TlsPolicy {
            tickets: false,
            ..TlsPolicy::default()
        };
        policy
            .set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384:TLS_AES_256_GCM_SHA384")
            .unwrap();
        let c = server_config_for(cell, Some(&policy), None).unwrap();
        assert!(!c.ticketer.enabled(), "ssl-session-tickets: false");
        let suites: Vec<String> = c
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert_eq!(
            suites,
            [
                "TLS13_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
            ]
        );
    }
}
