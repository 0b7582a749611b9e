//! An Ingress's settings from its annotations (methods of `Cx`): each
//! reads one annotation family into a typed value, and for a bad value
//! warns and says what is used instead, so one bad annotation never costs
//! the Ingress anything else.

use super::*;

impl Cx<'_> {
    /// `proxy-body-size`: nginx size syntax, "0" for no limit.
    pub(super) fn body_limit(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<u64> {
        let Some(v) = annotations::get(ing, "proxy-body-size") else {
            return self.config.body_limit;
        };
        match annotations::parse_size(v) {
            Some(0) => None,
            Some(n) => Some(n),
            None => {
                self.warn_ingress(
                    id,
                    &format!(
                        "proxy-body-size {v:?} is not a size (like 512k, 8m, 1g, or 0 for no limit); using the default ({})",
                        match self.config.body_limit {
                            Some(n) => format!("{n} bytes"),
                            None => "no limit".into(),
                        }
                    ),
                );
                self.config.body_limit
            }
        }
    }

    /// Records that TLS handshakes for `host` ask for client certificates
    /// as `auth` says; the oldest Ingress's setting of a host stays.
    pub(super) fn client_auth_host(
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

    /// `NAME` or `NAMESPACE/NAME` of a Secret in the Ingress's own namespace
    /// (Secrets are never shared across namespaces); warns otherwise.
    fn own_secret(
        &mut self,
        id: &NamespacedName,
        annotation: &str,
        value: &str,
    ) -> Option<NamespacedName> {
        match value.split_once('/') {
            None if !value.is_empty() => Some(NamespacedName::new(&id.namespace, value)),
            Some((ns, name)) if ns == id.namespace && !name.is_empty() => {
                Some(NamespacedName::new(ns, name))
            }
            _ => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{annotation} {value:?} must name a Secret of the Ingress's own namespace ({}); its paths answer 503",
                        id.namespace
                    ),
                );
                None
            }
        }
    }

    /// HTTP basic authentication (`auth-type: basic`, `auth-secret`,
    /// `auth-secret-type`, `auth-realm`). `Err` when the Ingress asks for
    /// authentication that cannot be applied: its paths answer 503, as
    /// ingress-nginx denies such a location.
    pub(super) fn basic_auth(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Result<Option<Arc<BasicAuth>>, &'static str> {
        const REFUSED: &str = "authentication settings that cannot be honoured";
        let auth_type = annotations::get(ing, "auth-type");
        let secret = annotations::get(ing, "auth-secret");
        let auth_type = match (auth_type, secret) {
            (None, None) => return Ok(None),
            (None, Some(_)) => {
                self.warn_ingress(
                    id,
                    "auth-secret is set without auth-type: basic; its paths answer 503 rather than guess",
                );
                return Err(REFUSED);
            }
            (Some(t), _) => t.to_ascii_lowercase(),
        };
        if auth_type != "basic" {
            self.warn_because(
                format!("Ingress {id}"),
                &format!(
                    "auth-type {auth_type:?} is not implemented (only basic): its paths answer 503 rather than serve without it"
                ),
                "UnsupportedAnnotation",
            );
            return Err(REFUSED);
        }
        let Some(secret) = secret else {
            self.warn_ingress(
                id,
                "auth-type: basic needs auth-secret; its paths answer 503",
            );
            return Err(REFUSED);
        };
        let secret_id = self.own_secret(id, "auth-secret", secret).ok_or(REFUSED)?;
        let Some(found) = self.objects.secrets.get(&secret_id).cloned() else {
            self.warn_ingress(
                id,
                &format!("auth-secret {secret_id} not found; its paths answer 503"),
            );
            return Err(REFUSED);
        };
        let fields = super::super::secret_fields(&found);
        let (users, errors) = match annotations::get(ing, "auth-secret-type").unwrap_or("auth-file")
        {
            "auth-file" => match fields.iter().find(|(k, _)| k == "auth") {
                Some((_, text)) => basic_auth::parse_htpasswd(&String::from_utf8_lossy(text)),
                None => {
                    self.warn_ingress(
                        id,
                        &format!(
                            "auth-secret {secret_id} has no key \"auth\" (an htpasswd file); its paths answer 503"
                        ),
                    );
                    return Err(REFUSED);
                }
            },
            // One key per user, the hash as its value.
            "auth-map" => {
                let lines: String = fields
                    .iter()
                    .map(|(user, hash)| {
                        format!("{user}:{}\n", String::from_utf8_lossy(hash).trim())
                    })
                    .collect();
                basic_auth::parse_htpasswd(&lines)
            }
            other => {
                self.warn_ingress(
                    id,
                    &format!(
                        "auth-secret-type {other:?} is not auth-file or auth-map; its paths answer 503"
                    ),
                );
                return Err(REFUSED);
            }
        };
        for (line, why) in errors {
            self.warn_ingress(
                id,
                &format!("auth-secret {secret_id}: entry {line} is ignored: {why}"),
            );
        }
        if users.is_empty() {
            self.warn_ingress(
                id,
                &format!(
                    "auth-secret {secret_id} holds no usable user: every request is refused (401)"
                ),
            );
        }
        let realm = annotations::get(ing, "auth-realm").unwrap_or("");
        Ok(Some(Arc::new(BasicAuth::new(realm, users))))
    }

    /// External authentication (`auth-url` and its companions). `Err` when
    /// it cannot be applied as written: the Ingress's paths answer 503.
    pub(super) fn external_auth(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Result<Option<Arc<ExternalAuth>>, &'static str> {
        const REFUSED: &str = "external authentication that cannot be honoured";
        let Some(url) = annotations::get(ing, "auth-url") else {
            return Ok(None);
        };
        let refuse = |cx: &mut Self, what: String| {
            cx.warn_ingress(id, &format!("{what}; its paths answer 503"));
            REFUSED
        };
        let url = match external_auth::UrlTemplate::parse(url) {
            // The Host header as sent carries a port the client chose.
            Ok(t) if t.uses(external_auth::Var::HttpHost) => {
                return Err(refuse(
                    self,
                    format!(
                        "auth-url {url:?} uses $http_host, which lets the client choose the port the auth request goes to (use $host)"
                    ),
                ));
            }
            Ok(t) => t,
            Err(e) => return Err(refuse(self, format!("auth-url {url:?}: {e}"))),
        };
        let method = match annotations::get(ing, "auth-method") {
            None => http::Method::GET,
            Some(m) => match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    return Err(refuse(
                        self,
                        format!("auth-method {m:?} is not an HTTP method"),
                    ));
                }
            },
        };
        let signin = match annotations::get(ing, "auth-signin") {
            None => None,
            Some(s) => match external_auth::UrlTemplate::parse(s) {
                Ok(t) => Some(t),
                Err(e) => return Err(refuse(self, format!("auth-signin {s:?}: {e}"))),
            },
        };
        let redirect_param = annotations::get(ing, "auth-signin-redirect-param").unwrap_or("rd");
        if redirect_param.is_empty()
            || !redirect_param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(refuse(
                self,
                format!(
                    "auth-signin-redirect-param {redirect_param:?} is not a query parameter name"
                ),
            ));
        }
        let mut response_headers = Vec::new();
        for name in annotations::get(ing, "auth-response-headers")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if crate::model::header_rules::framing_or_hop_by_hop(&h) => {
                    return Err(refuse(
                        self,
                        format!(
                            "auth-response-headers: {name:?} frames the message or describes one hop; copying it from the auth service would desynchronise the pod connection"
                        ),
                    ));
                }
                Ok(h) => response_headers.push(h),
                Err(_) => {
                    return Err(refuse(
                        self,
                        format!("auth-response-headers: {name:?} is not a header name"),
                    ));
                }
            }
        }
        let request_redirect = match annotations::get(ing, "auth-request-redirect") {
            None => None,
            Some(v) if http::HeaderValue::from_str(v).is_ok() => Some(v.to_string()),
            Some(v) => {
                return Err(refuse(
                    self,
                    format!("auth-request-redirect {v:?} is not a valid header value"),
                ));
            }
        };
        let cache = match annotations::get(ing, "auth-cache-key") {
            None => None,
            Some(key) => {
                let durations = annotations::get(ing, "auth-cache-duration")
                    .unwrap_or(external_auth::AuthCache::DEFAULT_DURATION);
                match external_auth::AuthCache::parse(key, durations) {
                    Ok(c) => Some(Arc::new(c)),
                    // Without the cache every request asks: slower, never open.
                    Err(e) => {
                        self.warn_ingress(
                            id,
                            &format!(
                                "auth-cache-key / auth-cache-duration: {e}; answers are not kept"
                            ),
                        );
                        None
                    }
                }
            }
        };
        let snippet = self
            .snippet(id, ing, "auth-snippet", crate::model::snippet::Scope::Auth)?
            .map(Arc::new);
        Ok(Some(Arc::new(ExternalAuth {
            snippet,
            cache,
            url,
            method,
            signin,
            redirect_param: redirect_param.to_string(),
            response_headers,
            request_redirect,
        })))
    }

    /// `ssl-passthrough` for one rule: its host's TLS connections go to the
    /// backend of its first path (paths mean nothing without decryption).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_passthrough(
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
    pub(super) fn upstream_tls(
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
            super::super::secret_fields(&found).into_iter().collect();
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
    pub(super) fn client_cn(
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
    pub(super) fn client_auth(
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

    /// `permanent-redirect` (301, or `permanent-redirect-code`), else
    /// `temporal-redirect` (302, or `temporal-redirect-code`): an absolute
    /// http(s) URL every request of the Ingress is sent to.
    pub(super) fn redirect(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<Arc<Redirect>> {
        let (kind, url, default_code) = match annotations::get(ing, "permanent-redirect") {
            Some(url) => ("permanent-redirect", url, 301),
            None => (
                "temporal-redirect",
                annotations::get(ing, "temporal-redirect")?,
                302,
            ),
        };
        let valid = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() > "https://".len()
            && url.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            self.warn_ingress(
                id,
                &format!("{kind} {url:?} is not an absolute http(s) URL; ignored"),
            );
            return None;
        }
        let code_name = format!("{kind}-code");
        let code = match annotations::get(ing, &code_name) {
            None => default_code,
            Some(v) => match v.parse::<u16>() {
                Ok(c) if (300..=308).contains(&c) => c,
                _ => {
                    self.warn_ingress(
                        id,
                        &format!("{code_name} {v:?} is not a redirect code (300-308); using {default_code}"),
                    );
                    default_code
                }
            },
        };
        Some(Arc::new(Redirect {
            code,
            location: url.into(),
            to_host: false,
        }))
    }

    /// A canary Ingress: each of its paths gives its backend to the main
    /// rule with the same host and path (its other settings are the main
    /// Ingress's, as in ingress-nginx).
    pub(super) fn attach_canary(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        hosts: &mut BTreeMap<HostKey, BTreeMap<(Box<str>, PathKind), PathRule>>,
    ) {
        let text = |name: &str| {
            annotations::get(ing, name)
                .filter(|v| !v.is_empty())
                .map(Box::<str>::from)
        };
        let number = |cx: &mut Self, name: &str, default: u32| match annotations::get(ing, name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                cx.warn_ingress(
                    id,
                    &format!("{name} {v:?} is not a whole number; using {default}"),
                );
                default
            }),
        };
        let total = number(self, "canary-weight-total", 100).max(1);
        let weight = number(self, "canary-weight", 0).min(total);
        let header_pattern = annotations::get(ing, "canary-by-header-pattern")
            .filter(|_| text("canary-by-header-value").is_none())
            .and_then(|p| {
                regex::bytes::RegexBuilder::new(p)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        self.warn_ingress(
                            id,
                            &format!("canary-by-header-pattern {p:?} is not a regular expression ({e}); ignored"),
                        );
                    })
                    .ok()
            });
        let protocol = self.protocol(id, ing);
        let shared_id = Arc::new(id.clone());
        let spec = ing.spec.as_ref();
        let use_regex = uses_regex(ing);
        for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
            let Ok(host) = parse_host(rule.host.as_deref()) else {
                self.warn_ingress(
                    id,
                    &format!("canary host {:?} is not valid; ignored", rule.host),
                );
                continue;
            };
            for p in rule.http.iter().flat_map(|h| &h.paths) {
                let Ok((path, kind, _)) = rule_path(p, use_regex) else {
                    self.warn_ingress(
                        id,
                        &format!("canary path {:?} is not valid; ignored", p.path),
                    );
                    continue;
                };
                let Some(main) = hosts
                    .get_mut(&host)
                    .and_then(|r| r.get_mut(&(path.clone(), kind)))
                else {
                    self.warn_ingress(
                        id,
                        &format!(
                            "canary {host} {path} ({kind:?}): no main Ingress defines it; ignored"
                        ),
                    );
                    continue;
                };
                if let Some(other) = &main.canary {
                    self.warn_ingress(
                        id,
                        &format!(
                            "{host} {path} already has the canary Ingress {}; this one is ignored",
                            other.ingress
                        ),
                    );
                    continue;
                }
                let backend = self.backend(id, protocol, &p.backend);
                main.canary = Some(Arc::new(Canary {
                    backend,
                    ingress: shared_id.clone(),
                    header: text("canary-by-header"),
                    header_value: text("canary-by-header-value"),
                    header_pattern: header_pattern.clone(),
                    cookie: text("canary-by-cookie"),
                    weight,
                    total,
                    next: std::sync::atomic::AtomicU32::new(0),
                }));
            }
        }
    }

    /// `affinity: cookie` and its `session-cookie-*` settings.
    pub(super) fn affinity(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<Arc<Affinity>> {
        match annotations::get(ing, "affinity")? {
            "cookie" => {}
            v => {
                self.warn_ingress(id, &format!("affinity {v:?} is not \"cookie\"; ignored"));
                return None;
            }
        }
        let token = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        };
        let name = match annotations::get(ing, "session-cookie-name") {
            None => "INGRESSCOOKIE",
            Some(v) if token(v) => v,
            Some(v) => {
                self.warn_ingress(
                    id,
                    &format!("session-cookie-name {v:?} is not a cookie name; using INGRESSCOOKIE"),
                );
                "INGRESSCOOKIE"
            }
        };
        let mut attributes = String::new();
        let path = annotations::get(ing, "session-cookie-path").unwrap_or("/");
        if path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
            attributes.push_str(&format!("; Path={path}"));
        } else {
            self.warn_ingress(
                id,
                &format!("session-cookie-path {path:?} is not a path; using /"),
            );
            attributes.push_str("; Path=/");
        }
        if let Some(v) = annotations::get(ing, "session-cookie-max-age") {
            match v.parse::<u32>() {
                Ok(n) => attributes.push_str(&format!("; Max-Age={n}")),
                Err(_) => self.warn_ingress(
                    id,
                    &format!("session-cookie-max-age {v:?} is not a whole number of seconds; a session cookie is used"),
                ),
            }
        }
        if let Some(v) = annotations::get(ing, "session-cookie-samesite") {
            match v.to_ascii_lowercase().as_str() {
                "none" => attributes.push_str("; SameSite=None"),
                "lax" => attributes.push_str("; SameSite=Lax"),
                "strict" => attributes.push_str("; SameSite=Strict"),
                _ => self.warn_ingress(
                    id,
                    &format!("session-cookie-samesite {v:?} is not None, Lax or Strict; not set"),
                ),
            }
        }
        if annotations::is(ing, "session-cookie-secure", "true")
            || attributes.ends_with("SameSite=None")
        {
            attributes.push_str("; Secure");
        }
        attributes.push_str("; HttpOnly");
        Some(Arc::new(Affinity {
            name: name.into(),
            attributes: attributes.into(),
        }))
    }

    /// `enable-cors: "true"` and the `cors-*` settings, ingress-nginx's
    /// defaults for those unset.
    pub(super) fn cors(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<Arc<Cors>> {
        if !annotations::is(ing, "enable-cors", "true") {
            return None;
        }
        let mut origins = Vec::new();
        let mut any = false;
        for entry in annotations::get(ing, "cors-allow-origin")
            .unwrap_or("*")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            if entry == "*" {
                any = true;
                continue;
            }
            match annotations::cors_origin(entry) {
                Ok(o) => origins.push(o),
                Err(e) => self.warn_ingress(id, &format!("cors-allow-origin: {e}; entry ignored")),
            }
        }
        if any {
            origins.clear();
        } else if origins.is_empty() {
            self.warn_ingress(
                id,
                "cors-allow-origin has no valid entry: no origin gets CORS headers",
            );
            return None;
        }
        let text = |cx: &mut Self, name: &str, default: &str| -> Box<str> {
            match annotations::get(ing, name) {
                None => default.into(),
                Some(v) if v.bytes().all(|b| b.is_ascii_graphic() || b == b' ') => v.into(),
                Some(v) => {
                    cx.warn_ingress(
                        id,
                        &format!("{name} {v:?} is not a header value; using the default"),
                    );
                    default.into()
                }
            }
        };
        let methods = text(self, "cors-allow-methods", annotations::CORS_METHODS);
        let headers = text(self, "cors-allow-headers", annotations::CORS_HEADERS);
        let expose = Some(text(self, "cors-expose-headers", "")).filter(|e| !e.is_empty());
        let credentials = !annotations::is(ing, "cors-allow-credentials", "false");
        let max_age = match annotations::get(ing, "cors-max-age") {
            None => annotations::CORS_MAX_AGE,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.warn_ingress(
                    id,
                    &format!(
                        "cors-max-age {v:?} is not a whole number of seconds; using {}",
                        annotations::CORS_MAX_AGE
                    ),
                );
                annotations::CORS_MAX_AGE
            }),
        };
        Some(Arc::new(Cors {
            origins,
            methods,
            headers,
            expose,
            credentials,
            max_age,
        }))
    }

    /// An annotation whose value becomes a request header: printable ASCII
    /// and `valid`, else a warning and ignored.
    pub(super) fn header_value(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        name: &str,
        valid: impl Fn(&str) -> bool,
    ) -> Option<Arc<str>> {
        let v = annotations::get(ing, name)?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) || !valid(v) {
            self.warn_ingress(id, &format!("{name} {v:?} is not a valid value; ignored"));
            return None;
        }
        Some(v.into())
    }

    /// `custom-headers: NAMESPACE/NAME`: that ConfigMap's fields set on the
    /// Ingress's responses, each only if the controller ConfigMap's
    /// `global-allowed-response-headers` lists it (as ingress-nginx 1.12+:
    /// an Ingress author cannot set what the operator has not allowed).
    pub(super) fn custom_headers(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<crate::model::header_rules::HeaderEdit>> {
        let v = annotations::get(ing, "custom-headers")?;
        let Some(cm_id) = NamespacedName::parse(v.trim()) else {
            self.warn_ingress(
                id,
                &format!("custom-headers {v:?} is not NAMESPACE/NAME of a ConfigMap; ignored"),
            );
            return None;
        };
        let Some(cm) = self.objects.config_maps.get(&cm_id) else {
            self.warn_ingress(
                id,
                &format!(
                    "custom-headers names ConfigMap {cm_id}, which does not exist; no field is set"
                ),
            );
            return None;
        };
        let (fields, errors) =
            crate::model::header_rules::fields_of(cm.data.as_ref().unwrap_or(&BTreeMap::new()));
        for e in errors {
            self.warn_ingress(id, &format!("custom-headers (ConfigMap {cm_id}): {e}"));
        }
        let (allowed, refused): (Vec<_>, Vec<_>) = fields
            .into_iter()
            .partition(|(name, _)| self.config.allowed_response_headers.contains(name));
        if !refused.is_empty() {
            let names: Vec<&str> = refused.iter().map(|(n, _)| n.as_str()).collect();
            self.warn_ingress(
                id,
                &format!(
                    "custom-headers: {} not in the controller ConfigMap's global-allowed-response-headers; not set",
                    names.join(", ")
                ),
            );
        }
        (!allowed.is_empty()).then(|| {
            Arc::new(crate::model::header_rules::HeaderEdit {
                set: allowed,
                ..Default::default()
            })
        })
    }

    /// `proxy-redirect-from`/`-to`, `proxy-cookie-path`, `proxy-cookie-domain`
    /// ("FROM TO", or "off"): parts of the pod's Location, Refresh and
    /// Set-Cookie rewritten.
    pub(super) fn response_rewrites(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Vec<crate::model::header_rules::Rewrite> {
        use crate::model::header_rules::Rewrite;
        let mut out = Vec::new();
        match (
            annotations::get(ing, "proxy-redirect-from").map(str::trim),
            annotations::get(ing, "proxy-redirect-to").map(str::trim),
        ) {
            (None, None) | (Some("off"), _) => {}
            (Some("default"), _) => self.warn_ingress(
                id,
                "proxy-redirect-from: default is not implemented (name the URL prefix); ignored",
            ),
            (Some(from), Some(to)) if !from.is_empty() => out.push(Rewrite::Redirect {
                from: from.into(),
                to: to.into(),
            }),
            _ => self.warn_ingress(
                id,
                "proxy-redirect-from and proxy-redirect-to go together; ignored",
            ),
        }
        for name in ["proxy-cookie-path", "proxy-cookie-domain"] {
            let Some(v) = annotations::get(ing, name).map(str::trim) else {
                continue;
            };
            if v == "off" {
                continue;
            }
            let words: Vec<&str> = v.split_whitespace().collect();
            let [from, to] = words[..] else {
                self.warn_ingress(
                    id,
                    &format!("{name} {v:?} is not \"FROM TO\" or off; ignored"),
                );
                continue;
            };
            out.push(if name == "proxy-cookie-path" {
                Rewrite::CookiePath {
                    from: from.into(),
                    to: to.into(),
                }
            } else {
                Rewrite::CookieDomain {
                    from: from.into(),
                    to: to.into(),
                }
            });
        }
        out
    }

    /// `load-balance` (else the ConfigMap's): `true` for `ewma`.
    pub(super) fn load_balance(&mut self, id: &NamespacedName, ing: &Ingress) -> bool {
        match annotations::get(ing, "load-balance").map(str::trim) {
            None => self.config.ewma,
            Some("ewma") => true,
            Some("round_robin") => false,
            Some(other) => {
                self.warn_ingress(
                    id,
                    &format!(
                        "load-balance {other:?} is not round_robin or ewma; the default is used"
                    ),
                );
                self.config.ewma
            }
        }
    }

    /// `upstream-hash-by` with `upstream-hash-by-subset` and
    /// `upstream-hash-by-subset-size` (3).
    pub(super) fn hash_by(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<crate::model::hashing::HashBy>> {
        let template = annotations::get(ing, "upstream-hash-by")?;
        let subset =
            annotations::is(ing, "upstream-hash-by-subset", "true").then(
                || match annotations::get(ing, "upstream-hash-by-subset-size")
                    .map(|v| v.trim().parse::<usize>())
                {
                    None => 3,
                    Some(Ok(n)) if n > 0 => n,
                    Some(_) => {
                        self.warn_ingress(
                            id,
                            "upstream-hash-by-subset-size is not a positive number; 3 is used",
                        );
                        3
                    }
                },
            );
        match crate::model::hashing::HashBy::parse(template, subset) {
            Ok(h) => Some(Arc::new(h)),
            Err(e) => {
                self.warn_ingress(
                    id,
                    &format!("upstream-hash-by: {e}; requests are spread round robin"),
                );
                None
            }
        }
    }

    /// The `default-backend` annotation: a Service in the Ingress's
    /// namespace (port 80 or its first).
    pub(super) fn annotation_default_backend(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<Backend>> {
        let name = annotations::get(ing, "default-backend")?.trim();
        if name.is_empty() || name.contains('/') {
            self.warn_ingress(
                id,
                &format!("default-backend {name:?} is not the name of a Service in the Ingress's namespace; ignored"),
            );
            return None;
        }
        Some(self.controller_default_backend(&NamespacedName::new(&id.namespace, name)))
    }

    /// `custom-http-errors` (else the ConfigMap's) and the error backend
    /// (the Ingress's `default-backend`, else `--default-backend-service`).
    pub(super) fn error_pages(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        backend: Option<&Arc<Backend>>,
    ) -> Option<Arc<crate::model::ErrorPages>> {
        let codes: Arc<[u16]> = match annotations::get(ing, "custom-http-errors") {
            Some(v) => match annotations::status_codes(v) {
                Ok(c) => c.into(),
                Err(e) => {
                    self.warn_ingress(id, &format!("custom-http-errors {e}"));
                    self.config.custom_http_errors.clone()
                }
            },
            None => self.config.custom_http_errors.clone(),
        };
        if codes.is_empty() {
            return None;
        }
        let Some(backend) = backend.cloned() else {
            self.warn_ingress(
                id,
                "custom-http-errors without an error backend (no default-backend annotation, no --default-backend-service): the pods' answers pass as they are",
            );
            return None;
        };
        Some(Arc::new(crate::model::ErrorPages { codes, backend }))
    }

    /// `app-root`: a path on the same host that requests for `/` go to.
    pub(super) fn app_root(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<Arc<str>> {
        let v = annotations::get(ing, "app-root")?;
        let valid = v.starts_with('/')
            && !v.starts_with("//")
            && v.len() > 1
            && v.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            self.warn_ingress(
                id,
                &format!("app-root {v:?} is not a path like /app; ignored"),
            );
            return None;
        }
        Some(v.into())
    }

    /// A timeout annotation in whole seconds, as ingress-nginx takes it
    /// (`proxy-read-timeout`, `proxy-connect-timeout`); `None` when unset
    /// or bad (warned): the agent's default.
    pub(super) fn seconds(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        name: &str,
    ) -> Option<std::time::Duration> {
        let v = annotations::get(ing, name)?;
        match v.parse::<u32>() {
            Ok(n) if n > 0 => Some(std::time::Duration::from_secs(n.into())),
            _ => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{name} {v:?} is not a positive whole number of seconds; using the default"
                    ),
                );
                None
            }
        }
    }

    /// `proxy-next-upstream*`, `upstream-max-fails`, `upstream-fail-timeout`
    /// and `proxy-send-timeout`; `None` when the Ingress sets none of them.
    /// A bad value warns and keeps that setting's default.
    pub(super) fn upstream_policy(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<annotations::UpstreamPolicy>> {
        let keys = annotations::UpstreamPolicy::KEYS;
        if keys.iter().all(|n| annotations::get(ing, n).is_none()) {
            return self.config.upstream_policy.clone();
        }
        // The ConfigMap's settings, then the Ingress's.
        let mut p = self
            .config
            .upstream_policy
            .as_deref()
            .copied()
            .unwrap_or_default();
        for key in keys {
            if let Some(v) = annotations::get(ing, key)
                && let Err(e) = p.set(key, v)
            {
                self.warn_ingress(id, &format!("{key} {v:?} {e}"));
            }
        }
        Some(Arc::new(p))
    }

    /// The `limit-*` annotations; `None` when the Ingress sets no limit.
    pub(super) fn rate_limit(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<RateLimit> {
        let count = |cx: &mut Self, name: &str| {
            let v = annotations::get(ing, name)?;
            match v.parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    cx.warn_ingress(
                        id,
                        &format!("{name} {v:?} is not a positive whole number; ignored"),
                    );
                    None
                }
            }
        };
        let connections = count(self, "limit-connections");
        let rps = count(self, "limit-rps");
        let rpm = count(self, "limit-rpm");
        let burst_multiplier =
            count(self, "limit-burst-multiplier").unwrap_or(annotations::DEFAULT_BURST_MULTIPLIER);
        if connections.is_none() && rps.is_none() && rpm.is_none() {
            return None;
        }
        let exempt = match annotations::get(ing, "limit-allowlist")
            .or_else(|| annotations::get(ing, "limit-whitelist"))
        {
            Some(value) => {
                let (list, bad) = cidr::parse_list(value);
                for e in bad {
                    self.warn_ingress(id, &format!("limit-allowlist: {e}; entry ignored"));
                }
                list.into()
            }
            None => Arc::from([]),
        };
        Some(RateLimit {
            connections,
            rps,
            rpm,
            burst_multiplier,
            exempt,
        })
    }

    /// `allowlist-source-range` (or its older name `whitelist-source-range`).
    pub(super) fn allow_list(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<Arc<[Cidr]>> {
        let value = annotations::get(ing, "allowlist-source-range")
            .or_else(|| annotations::get(ing, "whitelist-source-range"))?;
        let (list, bad) = cidr::parse_list(value);
        for e in bad {
            self.warn_ingress(id, &format!("allowlist-source-range: {e}; entry ignored"));
        }
        if list.is_empty() {
            self.warn_ingress(
                id,
                "allowlist-source-range has no valid entry: every source is refused",
            );
        }
        Some(list.into())
    }

    /// `denylist-source-range`: sources refused even where an allow list
    /// admits them. An entry that does not parse cannot be enforced, so it
    /// refuses the Ingress (`Err`) rather than let that range in.
    pub(super) fn deny_list(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Result<Option<Arc<[Cidr]>>, &'static str> {
        let Some(value) = annotations::get(ing, "denylist-source-range") else {
            return Ok(None);
        };
        let (list, bad) = cidr::parse_list(value);
        if !bad.is_empty() {
            for e in bad {
                self.warn_ingress(
                    id,
                    &format!("denylist-source-range: {e}; its paths answer 503 until it is fixed"),
                );
            }
            return Err("a denylist-source-range entry that does not parse");
        }
        Ok((!list.is_empty()).then(|| list.into()))
    }

    /// Tells about annotations under either prefix that xingress does not
    /// implement: a note for those it ignores; for one that restricts
    /// access, an error and what to refuse the Ingress's paths for.
    pub(super) fn check_annotations(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<&'static str> {
        let names = annotations::prefixed_names(ing);
        let (unenforced, ignored): (Vec<&str>, Vec<&str>) = names
            .into_iter()
            .filter(|n| crate::model::annotation_table::find(n).is_none())
            .partition(|n| annotations::UNENFORCED_ACCESS.contains(n));
        if !ignored.is_empty() {
            self.warnings.push(
                Warning::note(
                    format!("Ingress {id}"),
                    format!(
                        "annotations xingress does not implement are ignored: {}",
                        ignored.join(", ")
                    ),
                )
                .because("UnsupportedAnnotation"),
            );
        }
        if unenforced.is_empty() {
            return None;
        }
        self.warn_because(
            format!("Ingress {id}"),
            &format!(
                "{} restricts who may use this Ingress, and xingress does not implement it: its paths answer 503 rather than serve without it",
                unenforced.join(", ")
            ),
            "UnsupportedAnnotation",
        );
        Some("access control xingress does not implement")
    }

    /// `proxy-request-buffering` and `client-body-buffer-size`: the bytes
    /// of a body kept in memory when bodies are read whole first.
    pub(super) fn request_buffer(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<u32> {
        let c = &self.config;
        let (on, size) = (c.request_buffering, c.client_body_buffer);
        if !self.on_off(id, ing, "proxy-request-buffering", on) {
            return None;
        }
        Some(self.buffer_size(id, ing, "client-body-buffer-size", size))
    }

    /// `proxy-buffering`, `proxy-buffer-size` and `proxy-buffers-number`:
    /// the bytes of a response read ahead of the client.
    pub(super) fn response_buffer(&mut self, id: &NamespacedName, ing: &Ingress) -> Option<u32> {
        let c = &self.config;
        let (on, size, number) = (c.response_buffering, c.proxy_buffer_size, c.proxy_buffers);
        if !self.on_off(id, ing, "proxy-buffering", on) {
            return None;
        }
        let size = self.buffer_size(id, ing, "proxy-buffer-size", size);
        let number = match annotations::get(ing, "proxy-buffers-number") {
            None => number,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=1024).contains(&n) => n,
                _ => {
                    self.warn_ingress(
                        id,
                        &format!(
                            "proxy-buffers-number {v:?} is not a whole number from 1 to 1024; {number} is used"
                        ),
                    );
                    number
                }
            },
        };
        // At most 1 GiB read ahead per request.
        Some(size.saturating_mul(number).min(1 << 30))
    }

    /// An `on` / `off` annotation; `default` (the ConfigMap's) when absent
    /// or neither.
    fn on_off(&mut self, id: &NamespacedName, ing: &Ingress, name: &str, default: bool) -> bool {
        match annotations::get(ing, name) {
            None => default,
            Some("on") => true,
            Some("off") => false,
            Some(v) => {
                self.warn_ingress(
                    id,
                    &format!("{name} {v:?} is not on or off; the ConfigMap's setting applies"),
                );
                default
            }
        }
    }

    /// A buffer size annotation (1 byte to 64m); `default` otherwise.
    fn buffer_size(&mut self, id: &NamespacedName, ing: &Ingress, name: &str, default: u32) -> u32 {
        let Some(v) = annotations::get(ing, name) else {
            return default;
        };
        match annotations::parse_size(v) {
            Some(n) if (1..=64 << 20).contains(&n) => n as u32,
            _ => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{name} {v:?} is not a size from 1 byte to 64m; {default} bytes are used"
                    ),
                );
                default
            }
        }
    }

    /// `enable-opentelemetry` and `opentelemetry-trust-incoming-span`: the
    /// Ingress's over the ConfigMap's. Tracing needs `otlp-collector-host`.
    pub(super) fn otel(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<crate::model::otel::OtelRoute>> {
        let flag = |cx: &mut Self, name: &str, default: bool| match annotations::get(ing, name) {
            None => default,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                cx.warn_ingress(
                    id,
                    &format!(
                        "{name} {v:?} is not \"true\" or \"false\"; the ConfigMap's setting applies"
                    ),
                );
                default
            }
        };
        let keys = &self.config.otel;
        let (enabled, trust, operation) =
            (keys.enabled, keys.trust_incoming, keys.operation.clone());
        if !flag(self, "enable-opentelemetry", enabled) {
            return None;
        }
        if self.config.otel.host.is_none() {
            // The ConfigMap's own setting is reported once, with the key.
            if annotations::get(ing, "enable-opentelemetry").is_some() {
                self.warn_ingress(
                    id,
                    "enable-opentelemetry without the ConfigMap's otlp-collector-host: not traced",
                );
            }
            return None;
        }
        let trust_incoming = flag(self, "opentelemetry-trust-incoming-span", trust);
        Some(Arc::new(crate::model::otel::OtelRoute {
            trust_incoming,
            operation,
        }))
    }

    /// `server-snippet` and `configuration-snippet`. `Err` when one is
    /// refused: its paths answer 503 rather than serve without what the
    /// snippet does.
    pub(super) fn snippets(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Result<Option<Arc<crate::model::snippet::Snippets>>, &'static str> {
        use crate::model::snippet::{Scope, Snippets};
        let server = self.snippet(id, ing, "server-snippet", Scope::Server)?;
        let location = self.snippet(id, ing, "configuration-snippet", Scope::Location)?;
        if server.is_none() && location.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Snippets { server, location })))
    }

    /// One snippet annotation, parsed when the ConfigMap allows snippets;
    /// ignored (with an error naming it) when it does not.
    pub(super) fn snippet(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        name: &str,
        scope: crate::model::snippet::Scope,
    ) -> Result<Option<crate::model::snippet::Snippet>, &'static str> {
        let Some(src) = annotations::get(ing, name).filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        if !self.config.allow_snippets {
            self.warn_because(
                format!("Ingress {id}"),
                &format!(
                    "{name} is ignored: the controller ConfigMap does not set allow-snippet-annotations: \"true\" (off by default, as in ingress-nginx)"
                ),
                "SnippetsNotAllowed",
            );
            return Ok(None);
        }
        match crate::model::snippet::Snippet::parse(src, scope) {
            Ok(s) => Ok(Some(s)),
            Err(e) => {
                self.warn_because(
                    format!("Ingress {id}"),
                    &format!(
                        "{name} refused, {e}; its paths answer 503 rather than serve without the snippet"
                    ),
                    "SnippetRefused",
                );
                Err("a snippet xingress does not carry out")
            }
        }
    }

    /// The Ingress's `backend-protocol`, read once for all its backends.
    pub(super) fn protocol(&mut self, id: &NamespacedName, ing: &Ingress) -> BackendProtocol {
        match annotations::get(ing, "backend-protocol") {
            None => BackendProtocol::Http,
            Some(v) => BackendProtocol::parse(v).unwrap_or_else(|| {
                self.warn_ingress(
                    id,
                    &format!(
                        "unknown backend-protocol {v:?} (HTTP, HTTPS, GRPC, GRPCS, H2C); using HTTP"
                    ),
                );
                BackendProtocol::Http
            }),
        }
    }
}
