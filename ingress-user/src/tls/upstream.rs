//! Client TLS toward HTTPS pods when an Ingress asks for it (`proxy-ssl-*`):
//! the pod's certificate verified against the Secret's CA for a name, and
//! a client certificate shown to the pod.

use std::sync::Arc;

use rustls::{
    ClientConfig, DigitallySignedStruct, SignatureScheme,
    client::WebPkiServerVerifier,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

use super::UnverifiedChain;
use crate::model::UpstreamTls;
use crate::pem::{ca_roots, provider};

/// WebPKI verification, plus a bound on the chain's length
/// (`proxy-ssl-verify-depth`: 1 means signed by the CA itself).
#[derive(Debug)]
struct DepthVerifier {
    inner: Arc<WebPkiServerVerifier>,
    depth: u8,
}

impl ServerCertVerifier for DepthVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if intermediates.len() >= usize::from(self.depth) {
            return Err(rustls::Error::General(format!(
                "the pod's chain has {} intermediate certificates; proxy-ssl-verify-depth {} allows {}",
                intermediates.len(),
                self.depth,
                self.depth - 1
            )));
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The client config `tls` asks for; ALPN is set by the connector.
pub fn client_config(tls: &UpstreamTls) -> Result<ClientConfig, String> {
    let verifier: Arc<dyn ServerCertVerifier> = match &tls.ca_pem {
        Some(pem) => Arc::new(DepthVerifier {
            inner: WebPkiServerVerifier::builder_with_provider(ca_roots(pem)?, provider())
                .build()
                .map_err(|e| e.to_string())?,
            depth: tls.depth,
        }),
        None => Arc::new(UnverifiedChain::new()),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_pem {
        Some((crt, key)) => {
            let chain = CertificateDer::pem_slice_iter(crt)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| e.to_string())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = tls.sni;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::parse_documents;
    use crate::model::{Objects, TranslateOptions, translate};

    /// What an Ingress's `proxy-ssl-*` settings are read into makes a client
    /// config (how they are read is tested with the model:
    /// `proxy_ssl_settings_verify_https_pods_or_refuse_the_ingress`).
    #[test]
    fn proxy_ssl_settings_make_a_client_config() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let ca_pem: String = ca
            .cert
            .pem()
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        let p = "nginx.ingress.kubernetes.io/";
        let annotations = format!(
            "{p}backend-protocol: HTTPS, {p}proxy-ssl-verify: \"on\", {p}proxy-ssl-secret: default/ca, \
             {p}proxy-ssl-name: pod.internal, {p}proxy-ssl-server-name: \"on\", {p}proxy-ssl-verify-depth: \"2\""
        );
        let yaml = [
            "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: xingress}\n\
             spec: {controller: xingress.dev/controller}\n---\n"
                .to_string(),
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n\
             spec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\n"
                .to_string(),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: |\n{ca_pem}---\n"
            ),
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: full\n  annotations: {{{annotations}}}\n\
                 spec:\n  ingressClassName: xingress\n  rules:\n  - host: \"full.test\"\n    http:\n      paths:\n\
                 \x20     - path: \"/\"\n        pathType: Prefix\n        backend: {{service: {{name: a, port: {{number: 80}}}}}}\n---\n"
            ),
        ]
        .concat();
        let mut o = Objects::default();
        parse_documents(&yaml, "test.yaml", &mut o);
        let t = translate(&o, &TranslateOptions::default());
        let full = t
            .table
            .route(Some("full.test"), "/")
            .unwrap()
            .rule
            .unwrap()
            .settings
            .upstream_tls
            .clone()
            .unwrap();
        assert!(full.ca_pem.is_some());
        assert!(client_config(&full).is_ok());
    }
}
