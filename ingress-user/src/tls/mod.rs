//! TLS termination: certificates from kubernetes.io/tls Secrets, chosen per
//! handshake by SNI from the live snapshot (exact name, then wildcard, then
//! the default certificate).

mod certs;
mod client_auth;
mod resolver;
mod subject;
mod upstream;

pub use crate::pem::{CA_CRT, CertError, ca_roots, certified_key, provider};
pub use certs::{CertStore, TlsTable};
pub use client_auth::{ClientCert, HostAuth};
pub use resolver::{LiveTls, SniResolver, UnverifiedChain, server_config, server_config_for};
pub use subject::subject_dn;
pub use upstream::client_config;
