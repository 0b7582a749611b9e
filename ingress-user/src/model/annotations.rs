//! Ingress annotations: `xingress.dev/NAME`, or the ingress-nginx
//! `nginx.ingress.kubernetes.io/NAME` equivalent so users can switch without
//! rewriting their Ingresses. Ours wins when both are set.

use k8s_openapi::api::networking::v1::Ingress;

pub const PREFIX: &str = "xingress.dev/";
pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";

pub fn get<'a>(ing: &'a Ingress, name: &str) -> Option<&'a str> {
    let annotations = ing.metadata.annotations.as_ref()?;
    let key = |prefix: &str| format!("{prefix}{name}");
    annotations
        .get(&key(PREFIX))
        .or_else(|| annotations.get(&key(NGINX_PREFIX)))
        .map(|v| v.trim())
}

/// How the proxy talks to a backend (`backend-protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum BackendProtocol {
    /// HTTP/1.1 over TCP.
    #[default]
    Http,
    /// HTTP/1.1 over TLS (the pod's certificate is not verified, as ingress-nginx does by default).
    Https,
    /// HTTP/2 with prior knowledge over TCP (GRPC, H2C).
    H2c,
    /// HTTP/2 over TLS (GRPCS).
    H2Tls,
}

impl BackendProtocol {
    pub fn parse(v: &str) -> Option<Self> {
        match v.to_ascii_uppercase().as_str() {
            "HTTP" => Some(Self::Http),
            "HTTPS" => Some(Self::Https),
            "GRPC" | "H2C" => Some(Self::H2c),
            "GRPCS" => Some(Self::H2Tls),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Http => "HTTP",
            Self::Https => "HTTPS",
            Self::H2c => "H2C",
            Self::H2Tls => "GRPCS",
        }
    }
}
