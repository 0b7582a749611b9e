//! Client certificates (`auth-tls-*`): the CA of a Secret's `ca.crt`, a
//! verifier over it, and the server config for handshakes whose SNI names a
//! host that asks for a certificate.
//!
//! At the TLS level a certificate is always optional: a client without one
//! completes the handshake and gets a 400 from the request path (as
//! ingress-nginx answers), while a certificate that does not verify fails
//! the handshake. Each such host's config has its own session ticketer and
//! cache, so a session resumed there was authenticated there.

use std::sync::{Arc, OnceLock};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, ServerConnection,
    SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, UnixTime},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

use crate::model::{ClientAuth, ClientVerify};
use crate::pem::provider;

/// What a host's handshakes ask of clients, and the config that asks it.
#[derive(Debug)]
pub struct HostAuth {
    pub auth: Arc<ClientAuth>,
    verifier: Arc<ClientVerifier>,
    config: OnceLock<Arc<ServerConfig>>,
}

impl HostAuth {
    /// `roots`: the CA; `None` when its Secret is missing or broken, and
    /// then no certificate verifies (fail closed).
    pub fn new(auth: Arc<ClientAuth>, roots: Option<Arc<RootCertStore>>) -> Self {
        let algorithms = provider().signature_verification_algorithms;
        let webpki = roots.and_then(|roots| {
            WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .ok()
        });
        let check = match (auth.verify, webpki) {
            (ClientVerify::OptionalNoCa, webpki) => Check::Any(webpki),
            (_, Some(webpki)) => Check::Ca(webpki),
            (_, None) => Check::Refuse,
        };
        Self {
            verifier: Arc::new(ClientVerifier {
                check,
                intermediates: auth.depth > 1,
                algorithms,
            }),
            auth,
            config: OnceLock::new(),
        }
    }

    /// The server config for this host's handshakes, built on first use.
    pub fn config<L: super::LiveTls + 'static>(
        &self,
        live: &Arc<L>,
    ) -> Result<Arc<ServerConfig>, rustls::Error> {
        if let Some(c) = self.config.get() {
            return Ok(c.clone());
        }
        let verifier: Arc<dyn ClientCertVerifier> = self.verifier.clone();
        let policy = live.tls_policy();
        let config =
            super::resolver::server_config_for(live.clone(), policy.as_deref(), Some(verifier))?;
        Ok(self.config.get_or_init(|| config).clone())
    }

    /// What the finished handshake `conn` says about the client's
    /// certificate: ingress-nginx's `ssl-client-verify` value, and the
    /// certificate to pass on.
    pub fn outcome(&self, conn: &ServerConnection) -> ClientCert {
        let chain = conn.peer_certificates().unwrap_or_default();
        let Some(leaf) = chain.first() else {
            return ClientCert {
                asked: self.auth.clone(),
                verify: "NONE".into(),
                leaf: None,
                subject: None,
                escaped: None,
            };
        };
        let verify = match &self.verifier.check {
            // The handshake verified it.
            Check::Ca(_) => "SUCCESS".into(),
            // Not required to verify: say whether it does, as nginx does.
            Check::Any(webpki) => match webpki.as_ref().map(|w| {
                self.verifier
                    .verify_with(w.as_ref(), leaf, &chain[1..], UnixTime::now())
            }) {
                Some(Ok(_)) => "SUCCESS".into(),
                Some(Err(e)) => format!("FAILED:{e}").into(),
                None => "FAILED:no CA".into(),
            },
            Check::Refuse => "FAILED:no CA".into(),
        };
        let escaped = self
            .auth
            .pass_certificate
            .then(|| http::HeaderValue::from_str(&escaped_pem(leaf)).ok())
            .flatten();
        ClientCert {
            asked: self.auth.clone(),
            verify,
            subject: super::subject_dn(leaf).map(Into::into),
            leaf: Some(leaf.clone().into_owned()),
            escaped,
        }
    }
}

/// A connection's client certificate state, for the request path.
#[derive(Debug)]
pub struct ClientCert {
    /// What the handshake asked for (the SNI host's setting).
    pub asked: Arc<ClientAuth>,
    /// `SUCCESS`, `NONE` or `FAILED:reason`.
    pub verify: Box<str>,
    pub leaf: Option<CertificateDer<'static>>,
    /// The leaf's subject, RFC 2253 (nginx's `$ssl_client_s_dn`).
    pub subject: Option<Box<str>>,
    /// The leaf as `ssl-client-cert` carries it, when the route passes it on.
    pub escaped: Option<http::HeaderValue>,
}

/// A certificate as URL-encoded PEM (ingress-nginx's `ssl-client-cert`,
/// nginx's `$ssl_client_escaped_cert`).
fn escaped_pem(leaf: &CertificateDer<'_>) -> String {
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, leaf);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // Base64 is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    let mut out = String::with_capacity(pem.len() * 3 / 2);
    for b in pem.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug)]
enum Check {
    /// Chains to the CA (WebPKI, client-auth usage, validity).
    Ca(Arc<dyn ClientCertVerifier>),
    /// Any certificate whose handshake signature is valid
    /// (`optional_no_ca`); the CA's verdict, if there is a CA, goes to
    /// the pod.
    Any(Option<Arc<dyn ClientCertVerifier>>),
    /// The CA is missing or broken: no certificate verifies.
    Refuse,
}

#[derive(Debug)]
struct ClientVerifier {
    check: Check,
    /// `auth-tls-verify-depth` above 1: the client may send intermediates.
    /// At 1 the certificate must be signed by a CA certificate itself.
    intermediates: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientVerifier {
    /// `webpki`'s verdict on `leaf`, with the client's intermediates only
    /// when the depth allows them.
    fn verify_with(
        &self,
        webpki: &dyn ClientCertVerifier,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let intermediates = if self.intermediates {
            intermediates
        } else {
            &[]
        };
        webpki.verify_client_cert(leaf, intermediates, now)
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.check {
            Check::Ca(w) => w.root_hint_subjects(),
            Check::Any(_) | Check::Refuse => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.check {
            Check::Ca(w) => self.verify_with(w.as_ref(), end_entity, intermediates, now),
            Check::Any(_) => Ok(ClientCertVerified::assertion()),
            Check::Refuse => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_escaped_certificate_decodes_to_the_same_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["client.test".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let escaped = escaped_pem(cert.der());
        assert!(
            escaped
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)),
            "{escaped}"
        );
        // Percent-decode, then read the PEM back.
        let mut pem = Vec::new();
        let mut bytes = escaped.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
                let hex = std::str::from_utf8(&hex).unwrap();
                pem.push(u8::from_str_radix(hex, 16).unwrap());
            } else {
                pem.push(b);
            }
        }
        use rustls::pki_types::pem::PemObject;
        let back = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(back.as_ref(), cert.der().as_ref());
    }
}
