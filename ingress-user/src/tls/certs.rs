//! Secrets → certificates. Parsing happens when a Secret's content changes;
//! a Secret that turns bad or disappears keeps its last good certificate.

use std::{
    collections::{HashMap, HashSet, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::Arc,
};

use k8s_openapi::api::core::v1::Secret;
use rustls::{pki_types::PrivateKeyDer, sign::CertifiedKey};

use super::client_auth::HostAuth;
use crate::model::{ClientAuth, NamespacedName, Objects, TlsBinding, Warning, secret_field};
use crate::pem::{CA_CRT, CertError, ca_roots, certified_key, provider};

const TLS_CRT: &str = "tls.crt";
const TLS_KEY: &str = "tls.key";

/// A self-signed certificate for handshakes no Secret covers.
fn self_signed() -> Result<Arc<CertifiedKey>, CertError> {
    let cert = rcgen::generate_simple_self_signed(vec!["xingress-default.invalid".to_string()])?;
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    Ok(Arc::new(CertifiedKey::from_der(
        vec![cert.cert.der().clone()],
        key,
        &provider(),
    )?))
}

/// Certificates by SNI, immutable, part of the snapshot.
#[derive(Debug, Default)]
pub struct TlsTable {
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// `*.parent` certificates, keyed by `parent`.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// Hosts whose handshakes ask for a client certificate (`auth-tls-*`).
    client_auth: HashMap<Box<str>, Arc<HostAuth>>,
    /// The same for `*.parent` hosts, keyed by `parent`.
    client_auth_wildcard: HashMap<Box<str>, Arc<HostAuth>>,
    /// (host, its certificate's Secret, when the certificate expires in
    /// Unix seconds), for `nginx_ingress_controller_ssl_expire_time_seconds`.
    pub expiry: Vec<(Box<str>, NamespacedName, i64)>,
}

impl TlsTable {
    /// Whether any host asks for client certificates.
    pub fn asks_for_client_certs(&self) -> bool {
        !self.client_auth.is_empty() || !self.client_auth_wildcard.is_empty()
    }

    /// What a handshake for `sni` (lowercased) asks of the client: exact
    /// host, then `*.parent`.
    pub fn client_auth(&self, sni: Option<&str>) -> Option<&Arc<HostAuth>> {
        let name = sni?;
        self.client_auth.get(name).or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.client_auth_wildcard.get(parent)
        })
    }

    /// `sni` already lowercased; `None` (no SNI, or an IP) gets the default.
    pub fn lookup(&self, sni: Option<&str>) -> Option<&Arc<CertifiedKey>> {
        let by_name = sni.and_then(|name| {
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        by_name.or(self.default.as_ref())
    }

    /// Whether `name` (lowercased) has a certificate of its own, not the
    /// default one.
    pub fn has_own(&self, name: &str) -> bool {
        self.exact.contains_key(name)
            || name
                .split_once('.')
                .is_some_and(|(_, parent)| self.wildcard.contains_key(parent))
    }

    /// Host names with a certificate of their own (wildcards as `*.parent`).
    pub fn hosts(&self) -> Vec<String> {
        let mut v: Vec<String> = self.exact.keys().map(|h| h.to_string()).collect();
        v.extend(self.wildcard.keys().map(|p| format!("*.{p}")));
        v.sort();
        v
    }
}

struct Cached {
    /// The Secret object it was parsed from: the same `Arc` again (an
    /// unchanged manifest file, an unchanged reflector entry) skips hashing.
    source: Arc<Secret>,
    content: u64,
    key: Arc<CertifiedKey>,
}

/// Builds `TlsTable`s, remembering the last good certificate of each Secret.
pub struct CertStore {
    cache: HashMap<NamespacedName, Cached>,
    /// Client-certificate settings with their CA, kept while their Secret's
    /// `ca.crt` is unchanged (so are their session tickets).
    client_auth: HashMap<ClientAuth, (Option<u64>, Arc<HostAuth>)>,
    self_signed: Arc<CertifiedKey>,
}

impl CertStore {
    /// Generates the self-signed fallback certificate.
    pub fn new() -> Result<Self, CertError> {
        let self_signed = self_signed()?;
        Ok(Self {
            cache: HashMap::new(),
            client_auth: HashMap::new(),
            self_signed,
        })
    }

    /// SHA-256 fingerprint of the self-signed fallback certificate.
    pub fn self_signed_fingerprint(&self) -> String {
        self.self_signed
            .end_entity_cert()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }

    /// The certificates for `bindings` (oldest Ingress first: the first
    /// binding of a host wins), and `default` or the self-signed certificate
    /// for everything else.
    pub fn build(
        &mut self,
        objects: &Objects,
        bindings: &[TlsBinding],
        default: Option<&NamespacedName>,
        warnings: &mut Vec<Warning>,
    ) -> TlsTable {
        let mut table = TlsTable::default();
        let mut owner: HashMap<&str, &NamespacedName> = HashMap::new();
        let mut used: HashSet<&NamespacedName> = HashSet::new();
        let mut listener_default = None;
        for b in bindings {
            let Some(secret) = &b.secret else { continue };
            let Some(key) = self.load(
                objects,
                secret,
                &|| format!("{} {}", b.kind, b.ingress),
                warnings,
            ) else {
                continue;
            };
            used.insert(secret);
            for host in &b.hosts {
                // A Gateway listener without a hostname: its certificate
                // for every name nothing else covers.
                if host == "*" {
                    listener_default.get_or_insert_with(|| key.clone());
                    continue;
                }
                match owner.get(host.as_str()) {
                    Some(first) if *first != secret => warnings.push(Warning::error(
                        format!("{} {}", b.kind, b.ingress),
                        format!("TLS host {host} already uses Secret {first} from an older Ingress or Gateway; Secret {secret} is not used for it"),
                    )),
                    Some(_) => {}
                    None => {
                        owner.insert(host.as_str(), secret);
                        if let Some(at) = key.cert.first().and_then(|c| super::subject::not_after(c)) {
                            table.expiry.push((host.as_str().into(), secret.clone(), at));
                        }
                        match host.strip_prefix("*.") {
                            Some(parent) => table.wildcard.insert(parent.into(), key.clone()),
                            None => table.exact.insert(host.as_str().into(), key.clone()),
                        };
                    }
                }
            }
        }
        let configured_default = default.and_then(|d| {
            used.insert(d);
            self.load(objects, d, &|| "--default-ssl-certificate".into(), warnings)
        });
        table.default = Some(
            listener_default
                .or(configured_default)
                .unwrap_or_else(|| self.self_signed.clone()),
        );
        self.cache.retain(|k, _| used.contains(k));
        table
    }

    /// Adds to `table` the hosts that ask for client certificates, each
    /// with its Secret's CA. A missing or broken CA is an error and no
    /// certificate verifies for that host until it is fixed.
    pub fn add_client_auth(
        &mut self,
        table: &mut TlsTable,
        objects: &Objects,
        hosts: &[(String, Arc<ClientAuth>)],
        warnings: &mut Vec<Warning>,
    ) {
        let mut current: HashMap<ClientAuth, (Option<u64>, Arc<HostAuth>)> = HashMap::new();
        for (host, auth) in hosts {
            let entry = match current.get(&**auth) {
                Some((_, e)) => e.clone(),
                None => {
                    let ca = self.ca(objects, auth, warnings);
                    let content = ca.as_ref().map(|(c, _)| *c);
                    let entry = match self.client_auth.get(&**auth) {
                        Some((c, e)) if *c == content => e.clone(),
                        _ => Arc::new(HostAuth::new(auth.clone(), ca.map(|(_, roots)| roots))),
                    };
                    current.insert((**auth).clone(), (content, entry.clone()));
                    entry
                }
            };
            match host.strip_prefix("*.") {
                Some(parent) => table.client_auth_wildcard.insert(parent.into(), entry),
                None => table.client_auth.insert(host.as_str().into(), entry),
            };
        }
        self.client_auth = current;
    }

    /// The CA of `auth`'s Secret (a hash of `ca.crt`, and its roots).
    fn ca(
        &self,
        objects: &Objects,
        auth: &ClientAuth,
        warnings: &mut Vec<Warning>,
    ) -> Option<(u64, Arc<rustls::RootCertStore>)> {
        let id = &auth.secret;
        let refuse = "client certificates are refused until it is fixed";
        let Some(secret) = objects.secrets.get(id) else {
            warnings.push(
                Warning::error(
                    format!("Secret {id}"),
                    format!(
                        "not found (auth-tls-secret; in Kubernetes mode kubernetes.io/tls and Opaque Secrets are read); {refuse}"
                    ),
                )
                .because("SecretNotFound"),
            );
            return None;
        };
        let Some(pem) = secret_field(secret, CA_CRT) else {
            warnings.push(
                Warning::error(format!("Secret {id}"), format!("needs {CA_CRT}; {refuse}"))
                    .because("InvalidSecret"),
            );
            return None;
        };
        let mut h = DefaultHasher::new();
        pem.hash(&mut h);
        match ca_roots(&pem) {
            Ok(roots) => Some((h.finish(), roots)),
            Err(e) => {
                warnings.push(
                    Warning::error(format!("Secret {id}"), format!("{e}; {refuse}"))
                        .because("InvalidSecret"),
                );
                None
            }
        }
    }

    /// The Secret's certificate: freshly parsed when its content changed,
    /// else cached; the last good one when it is now missing or broken.
    fn load(
        &mut self,
        objects: &Objects,
        id: &NamespacedName,
        who: &dyn Fn() -> String,
        warnings: &mut Vec<Warning>,
    ) -> Option<Arc<CertifiedKey>> {
        let Some(secret) = objects.secrets.get(id) else {
            let kept = self.cache.get(id).map(|c| c.key.clone());
            let what = if kept.is_some() {
                "keeping its last good certificate"
            } else {
                "the default certificate is served instead"
            };
            warnings.push(
                Warning::error(who(), format!("TLS Secret {id} not found; {what}"))
                    .because("SecretNotFound"),
            );
            return kept;
        };
        if let Some(c) = self.cache.get(id)
            && Arc::ptr_eq(&c.source, secret)
        {
            return Some(c.key.clone());
        }
        let (Some(crt), Some(key)) = (secret_field(secret, TLS_CRT), secret_field(secret, TLS_KEY))
        else {
            warnings.push(
                Warning::error(
                    format!("Secret {id}"),
                    format!("needs {TLS_CRT} and {TLS_KEY}; {}", self.kept_note(id)),
                )
                .because("InvalidSecret"),
            );
            return self.cache.get(id).map(|c| c.key.clone());
        };
        let mut h = DefaultHasher::new();
        (&crt, &key).hash(&mut h);
        let content = h.finish();
        if let Some(c) = self.cache.get_mut(id)
            && c.content == content
        {
            c.source = secret.clone();
            return Some(c.key.clone());
        }
        match certified_key(&crt, &key) {
            Ok(k) => {
                self.cache.insert(
                    id.clone(),
                    Cached {
                        source: secret.clone(),
                        content,
                        key: k.clone(),
                    },
                );
                Some(k)
            }
            Err(e) => {
                warnings.push(
                    Warning::error(
                        format!("Secret {id}"),
                        format!("{e}; {}", self.kept_note(id)),
                    )
                    .because("InvalidSecret"),
                );
                self.cache.get(id).map(|c| c.key.clone())
            }
        }
    }

    fn kept_note(&self, id: &NamespacedName) -> &'static str {
        if self.cache.contains_key(id) {
            "keeping the last good certificate"
        } else {
            "the default certificate is served instead"
        }
    }
}

/// SHA-256 of a DER certificate, hex, as `openssl x509 -fingerprint -sha256` shows it.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
