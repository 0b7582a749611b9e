//! Authentication of requests: HTTP basic authentication from a Secret
//! (`auth-type`, `auth-secret*`, `auth-realm`) and external authentication
//! (`auth-url` and its companions).

use super::*;

impl Cx<'_> {
    /// HTTP basic authentication (`auth-type: basic`, `auth-secret`,
    /// `auth-secret-type`, `auth-realm`). `Err` when the Ingress asks for
    /// authentication that cannot be applied: its paths answer 503, as
    /// ingress-nginx denies such a location.
    pub(in crate::model::translate) fn basic_auth(
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
        let fields = crate::model::secret_fields(&found);
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
    pub(in crate::model::translate) fn external_auth(
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
}
