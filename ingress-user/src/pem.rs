//! PEM in, rustls types out: certificate chains with their keys, CA
//! bundles, and the process's crypto provider. A leaf: it imports nothing of
//! the crate, so the model (which checks Secrets while translating) and TLS
//! termination both use it.

use std::sync::{Arc, OnceLock};

use rustls::{
    RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    sign::CertifiedKey,
};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("no PEM certificate in tls.crt")]
    NoCertificate,
    #[error("tls.crt: {0}")]
    CertPem(String),
    #[error("tls.key: no supported private key (PKCS#1, PKCS#8 or SEC1 PEM): {0}")]
    Key(String),
    #[error("certificate and key do not match or are unsupported: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate the self-signed certificate: {0}")]
    SelfSigned(#[from] rcgen::Error),
}

/// The process-wide crypto provider (ring).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// Parses a PEM chain (leaf first) and a PEM private key in PKCS#1
/// ("RSA PRIVATE KEY"), PKCS#8 ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY") form.
pub fn certified_key(crt_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = CertificateDer::pem_slice_iter(crt_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::CertPem(e.to_string()))?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| CertError::Key(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::from_der(chain, key, &provider())?))
}

pub const CA_CRT: &str = "ca.crt";

/// The CA certificates of a `ca.crt`.
pub fn ca_roots(pem: &[u8]) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| format!("{CA_CRT}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("{CA_CRT}: not a usable CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("no PEM certificate in {CA_CRT}"));
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_needs_at_least_one_certificate() {
        assert!(ca_roots(b"").unwrap_err().contains("no PEM certificate"));
        assert!(ca_roots(b"-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        assert_eq!(ca_roots(ca.pem().as_bytes()).unwrap().len(), 1);
    }
}
