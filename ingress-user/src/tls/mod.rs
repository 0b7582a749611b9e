//! TLS termination: certificates from kubernetes.io/tls Secrets, chosen per
//! handshake by SNI from the live snapshot (exact name, then wildcard, then
//! the default certificate).

mod certs;
mod client_auth;
mod resolver;
mod subject;
mod upstream;

pub use certs::{CertError, CertStore, TlsTable, certified_key, provider};
pub use client_auth::{ClientCert, HostAuth, ca_roots};
pub use resolver::{SniResolver, UnverifiedChain, server_config, server_config_for};
pub use subject::subject_dn;
pub use upstream::client_config;
