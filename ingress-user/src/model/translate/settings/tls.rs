//! TLS on both sides: client certificates asked for per host (`auth-tls-*`),
//! `ssl-passthrough`, and verifying HTTPS pods (`proxy-ssl-*`).

use super::*;

impl Cx<'_> {
    /// Records that TLS handshakes for `host` ask for client certificates
    /// as `auth` says; the oldest Ingress's setting of a host stays.
    pub(in crate::model::translate) fn client_auth_host(
        &mut self,
        id: &NamespacedName,
        host: &HostKey,
        auth: &Arc<ClientAuth>,
        hosts: &mut BTreeMap<String, Arc<ClientAuth>>,
    ) {
        if *host == HostKey::Any {
            self.warn_ingress(
                id,
                "auth-tls-secret on a rule without a host: no TLS handshake can ask for its certificate, so its requests are refused (403)",
            );
            return;
        }
        match hosts.entry(host.to_string()) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(auth.clone());
            }
            std::collections::btree_map::Entry::Occupied(e) if **e.get() != **auth => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{host} already asks for client certificates differently (an older Ingress's auth-tls-*); this Ingress's requests on it are refused (421)"
                    ),
                );
            }
            std::collections::btree_map::Entry::Occupied(_) => {}
        }
    }

    /// A certificate chain depth annotation: 1 (signed by the CA itself)
    /// when unset; `None` (warned) when it is not a positive number.
    fn verify_depth(&mut self, id: &NamespacedName, ing: &Ingress, name: &str) -> Option<u8> {
        let Some(v) = annotations::get(ing, name) else {
            return Some(1);
        };
        match v.parse::<u8>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                self.warn_ingress(
                    id,
                    &format!("{name} {v:?} is not a positive whole number; its paths answer 503"),
                );
                None
            }
        }
    }

    /// `ssl-passthrough` for one rule: its host's TLS connections go to the
    /// backend of its first path (paths mean nothing without decryption).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::model::translate) fn add_passthrough(
        &mut self,
        id: &NamespacedName,
        host: &HostKey,
        paths: &[k8s_openapi::api::networking::v1::HTTPIngressPath],
        ingress: &Arc<NamespacedName>,
        allow: &Option<Arc<[Cidr]>>,
        deny: &Option<Arc<[Cidr]>>,
        passthroughs: &mut HashMap<Box<str>, Arc<Passthrough>>,
        protocol: BackendProtocol,
    ) {
        if *host == HostKey::Any {
            self.warn_ingress(
                id,
                "ssl-passthrough on a rule without a host: a connection is passed through by its TLS server name, so this rule is served as usual",
            );
            return;
        }
        let Some(first) = paths.first() else { return };
        if paths.len() > 1 {
            self.warn_ingress(
                id,
                &format!(
                    "ssl-passthrough: TLS for {host} is not decrypted, so its paths cannot be told apart; all of it goes to the first path's backend"
                ),
            );
        }
        let name: Box<str> = host.to_string().into();
        if let Some(older) = passthroughs.get(&name) {
            if *older.ingress != *id {
                self.warn_ingress(
                    id,
                    &format!(
                        "ssl-passthrough for {host} is already set by the older Ingress {}; this one's is ignored",
                        older.ingress
                    ),
                );
            }
            return;
        }
        let backend = self.backend(id, protocol, &first.backend);
        passthroughs.insert(
            name,
            Arc::new(Passthrough {
                gateway: false,
                backend,
                split: None,
                ingress: ingress.clone(),
                allow: allow.clone(),
                deny: deny.clone(),
            }),
        );
    }

    /// `proxy-ssl-*`: checking an HTTPS pod's certificate, and the client
    /// certificate shown to it. `Err` when verification is asked for and
    /// cannot be done: the Ingress refuses rather than talk to a pod
    /// nobody verified.
    pub(in crate::model::translate) fn upstream_tls(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        protocol: BackendProtocol,
    ) -> Result<Option<Arc<UpstreamTls>>, &'static str> {
        const REFUSED: &str = "pod certificate verification that cannot be done";
        let verify = match annotations::get(ing, "proxy-ssl-verify").map(str::to_ascii_lowercase) {
            None => false,
            Some(v) if v == "on" => true,
            Some(v) if v == "off" => false,
            Some(v) => {
                self.warn_ingress(
                    id,
                    &format!("proxy-ssl-verify {v:?} is not on or off; its paths answer 503"),
                );
                return Err(REFUSED);
            }
        };
        let Some(secret) = annotations::get(ing, "proxy-ssl-secret") else {
            if verify {
                self.warn_ingress(
                    id,
                    "proxy-ssl-verify: on needs proxy-ssl-secret (a Secret with ca.crt); its paths answer 503",
                );
                return Err(REFUSED);
            }
            return Ok(None);
        };
        if !matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls) {
            self.warn_ingress(
                id,
                "proxy-ssl-* applies to HTTPS backends (backend-protocol: HTTPS or GRPCS); ignored for this plain one",
            );
            return Ok(None);
        }
        let secret_id = self
            .own_secret(id, "proxy-ssl-secret", secret)
            .ok_or(REFUSED)?;
        let Some(found) = self.objects.secrets.get(&secret_id).cloned() else {
            if verify {
                self.warn_ingress(
                    id,
                    &format!("proxy-ssl-secret {secret_id} not found; its paths answer 503"),
                );
                return Err(REFUSED);
            }
            self.warn_ingress(
                id,
                &format!("proxy-ssl-secret {secret_id} not found; no client certificate is shown to the pod"),
            );
            return Ok(None);
        };
        let fields: BTreeMap<String, Vec<u8>> =
            crate::model::secret_fields(&found).into_iter().collect();
        let ca_pem = match fields.get("ca.crt") {
            Some(pem) if crate::pem::ca_roots(pem).is_ok() => Some(pem.clone()),
            _ if verify => {
                self.warn_ingress(
                    id,
                    &format!(
                        "proxy-ssl-secret {secret_id} has no readable ca.crt to verify the pod with; its paths answer 503"
                    ),
                );
                return Err(REFUSED);
            }
            _ => None,
        };
        let client_pem = match (fields.get("tls.crt"), fields.get("tls.key")) {
            (Some(crt), Some(key)) if crate::pem::certified_key(crt, key).is_ok() => {
                Some((crt.clone(), key.clone()))
            }
            (Some(_), Some(_)) => {
                self.warn_ingress(
                    id,
                    &format!(
                        "proxy-ssl-secret {secret_id}: tls.crt and tls.key do not make a certificate and key; its paths answer 503"
                    ),
                );
                return Err(REFUSED);
            }
            _ => None,
        };
        let name = match annotations::get(ing, "proxy-ssl-name") {
            None => None,
            Some(n) if rustls::pki_types::ServerName::try_from(n.to_string()).is_ok() => {
                Some(n.to_string())
            }
            Some(n) => {
                self.warn_ingress(
                    id,
                    &format!(
                        "proxy-ssl-name {n:?} is not a DNS name or IP address; its paths answer 503"
                    ),
                );
                return Err(REFUSED);
            }
        };
        let depth = self
            .verify_depth(id, ing, "proxy-ssl-verify-depth")
            .ok_or(REFUSED)?;
        Ok(Some(Arc::new(UpstreamTls {
            secret: secret_id,
            ca_pem: if verify { ca_pem } else { None },
            client_pem,
            name,
            sni: annotations::is(ing, "proxy-ssl-server-name", "on"),
            depth,
        })))
    }

    /// `auth-tls-match-cn`: a regular expression the client certificate's
    /// subject must match. `Err` when it cannot be applied (not a regular
    /// expression, or no `auth-tls-secret` to ask for a certificate).
    pub(in crate::model::translate) fn client_cn(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        asks_for_certificates: bool,
    ) -> Result<Option<Arc<regex::Regex>>, &'static str> {
        const REFUSED: &str = "a client certificate subject check that cannot be applied";
        let Some(pattern) = annotations::get(ing, "auth-tls-match-cn") else {
            return Ok(None);
        };
        if !asks_for_certificates {
            self.warn_ingress(
                id,
                "auth-tls-match-cn needs auth-tls-secret (no certificate is asked for without it); its paths answer 503",
            );
            return Err(REFUSED);
        }
        match regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => Ok(Some(Arc::new(re))),
            Err(e) => {
                self.warn_ingress(
                    id,
                    &format!(
                        "auth-tls-match-cn {pattern:?} is not a regular expression ({e}); its paths answer 503"
                    ),
                );
                Err(REFUSED)
            }
        }
    }

    /// The `auth-tls-*` annotations. `Err` when they ask for client
    /// certificates in a way that cannot be honoured: the Ingress refuses.
    pub(in crate::model::translate) fn client_auth(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Result<Option<Arc<ClientAuth>>, &'static str> {
        const REFUSED: &str = "client certificate settings that cannot be honoured";
        let Some(secret) = annotations::get(ing, "auth-tls-secret") else {
            return Ok(None);
        };
        let secret = self
            .own_secret(id, "auth-tls-secret", secret)
            .ok_or(REFUSED)?;
        let verify = match annotations::get(ing, "auth-tls-verify-client")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("on") => ClientVerify::On,
            Some("optional") => ClientVerify::Optional,
            Some("optional_no_ca") => ClientVerify::OptionalNoCa,
            Some("off") => return Ok(None),
            Some(v) => {
                self.warn_ingress(
                    id,
                    &format!(
                        "auth-tls-verify-client {v:?} is not on, optional, optional_no_ca or off; its paths answer 503"
                    ),
                );
                return Err(REFUSED);
            }
        };
        let depth = self
            .verify_depth(id, ing, "auth-tls-verify-depth")
            .ok_or(REFUSED)?;
        let pass_certificate =
            annotations::is(ing, "auth-tls-pass-certificate-to-upstream", "true");
        Ok(Some(Arc::new(ClientAuth {
            secret,
            verify,
            depth,
            pass_certificate,
        })))
    }
}
