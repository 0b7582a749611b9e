//! One Ingress's rules: its annotations read into the settings all its
//! rules share, and what building its rules needs besides (its backends,
//! refusal, pass-through and auth bindings).

use super::*;

/// What one main Ingress asks of its rules.
pub(super) struct IngressRules {
    pub(super) protocol: BackendProtocol,
    pub(super) shared_id: Arc<NamespacedName>,
    /// Set when its access rules cannot be applied: every path answers 503.
    pub(super) refused: Option<Arc<Backend>>,
    /// `ssl-passthrough`.
    pub(super) passthrough: bool,
    pub(super) client_auth: Option<Arc<ClientAuth>>,
    pub(super) external_auth: Option<Arc<ExternalAuth>>,
    pub(super) allow: Option<Arc<[Cidr]>>,
    pub(super) deny: Option<Arc<[Cidr]>>,
    /// `default-backend`: its error backend, and the backend of its rules
    /// whose Service has no ready endpoint.
    own_default: Option<Arc<Backend>>,
    /// `service-upstream`.
    service_upstream: bool,
    /// `use-regex` or `rewrite-target`: its paths are regular expressions.
    pub(super) use_regex: bool,
    /// What its annotations ask of every request of its rules.
    pub(super) settings: Arc<RouteSettings>,
}

impl IngressRules {
    /// The backend of one of its paths (or of its defaultBackend).
    pub(super) fn backend(
        &self,
        cx: &mut Cx,
        id: &NamespacedName,
        b: &IngressBackend,
    ) -> Arc<Backend> {
        if let Some(r) = &self.refused {
            return r.clone();
        }
        let backend = cx.backend(id, self.protocol, b);
        // `service-upstream`: the Service's cluster IP, not its pods.
        let backend = if self.service_upstream {
            cx.cluster_ip_backend(id, backend)
        } else {
            backend
        };
        match &self.own_default {
            Some(fallback)
                if matches!(backend.target, crate::model::BackendTarget::NoEndpoints) =>
            {
                fallback.clone()
            }
            _ => backend,
        }
    }

    /// A rule of this Ingress.
    pub(super) fn rule(
        &self,
        path: Box<str>,
        kind: PathKind,
        regex: Option<Arc<regex::Regex>>,
        backend: Arc<Backend>,
    ) -> PathRule {
        PathRule {
            path,
            kind,
            backend,
            ingress: self.shared_id.clone(),
            redirect_https: false,
            regex,
            canary: None,
            matcher: None,
            stats: 0,
            order: 0,
            settings: self.settings.clone(),
        }
    }
}

impl Cx<'_> {
    /// Reads one main Ingress's annotations (warning about each bad one);
    /// its rate limits join `limits`.
    pub(super) fn ingress_rules(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
        error_backend: Option<&Arc<Backend>>,
        limits: &mut Vec<(NamespacedName, RateLimit)>,
    ) -> IngressRules {
        let protocol = self.protocol(id, ing);
        let shared_id = Arc::new(id.clone());
        // An Ingress whose access rules cannot be applied answers 503 on
        // every path rather than serve without them.
        let deny = self.deny_list(id, ing);
        let mut refused = match (self.check_annotations(id, ing), &deny) {
            (Some(what), _) | (None, &Err(what)) => Some(refusal(id, what)),
            (None, Ok(_)) => None,
        };
        let deny = deny.unwrap_or(None);
        let client_auth = refuse_on_err(self.client_auth(id, ing), id, &mut refused);
        let basic_auth = refuse_on_err(self.basic_auth(id, ing), id, &mut refused);
        let external_auth = refuse_on_err(self.external_auth(id, ing), id, &mut refused);
        let upstream_tls = refuse_on_err(self.upstream_tls(id, ing, protocol), id, &mut refused);
        let snippets = refuse_on_err(self.snippets(id, ing), id, &mut refused);
        // `ssl-passthrough`: the agent never decrypts these connections, so
        // settings that need the request cannot hold; rather than drop
        // them, the Ingress refuses.
        let passthrough = annotations::is(ing, "ssl-passthrough", "true");
        if passthrough && refused.is_none() {
            let needs_request: Vec<&str> = [
                ("auth-type", basic_auth.is_some()),
                ("auth-url", external_auth.is_some()),
                ("auth-tls-secret", client_auth.is_some()),
            ]
            .into_iter()
            .filter_map(|(name, set)| set.then_some(name))
            .collect();
            if !needs_request.is_empty() {
                let what = "access control that ssl-passthrough cannot apply";
                self.warn_ingress(
                    id,
                    &format!(
                        "ssl-passthrough passes TLS through undecrypted, so {} cannot be applied: its paths answer 503",
                        needs_request.join(", ")
                    ),
                );
                refused = Some(refusal(id, what));
            }
        }
        let client_cn = refuse_on_err(
            self.client_cn(id, ing, client_auth.is_some()),
            id,
            &mut refused,
        );
        // A refused Ingress asks no handshake for anything.
        let client_auth = client_auth.filter(|_| refused.is_none());
        // `default-backend`: this Ingress's error backend, and the backend
        // of its rules whose Service has no ready endpoint.
        let own_default = self.annotation_default_backend(id, ing);
        let service_upstream = annotations::is(ing, "service-upstream", "true");
        let allow = self.allow_list(id, ing);
        let body_limit = self.body_limit(id, ing);
        let read_timeout = self
            .seconds(id, ing, "proxy-read-timeout")
            .or(self.config.read_timeout);
        let connect_timeout = self
            .seconds(id, ing, "proxy-connect-timeout")
            .or(self.config.connect_timeout);
        let upstream_policy = self.upstream_policy(id, ing);
        let access_log_off = annotations::is(ing, "enable-access-log", "false");
        let redirect = self.redirect(id, ing);
        let cors = self.cors(id, ing);
        let affinity = self.affinity(id, ing);
        let upstream_vhost = self.header_value(id, ing, "upstream-vhost", |v| {
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
        let forwarded_prefix =
            self.header_value(id, ing, "x-forwarded-prefix", |v| v.starts_with('/'));
        let rewrite = rewrite_target(ing);
        let response_edit = self.custom_headers(id, ing);
        let rewrites = self.response_rewrites(id, ing);
        let response_edit = if rewrites.is_empty() {
            response_edit
        } else {
            let mut e = response_edit.map(|e| (*e).clone()).unwrap_or_default();
            e.rewrite = rewrites;
            Some(Arc::new(e))
        };
        let hash_by = self.hash_by(id, ing);
        let request_buffer = self.request_buffer(id, ing);
        let response_buffer = self.response_buffer(id, ing);
        let otel = self.otel(id, ing);
        let ewma = self.load_balance(id, ing);
        let http10 = match annotations::get(ing, "proxy-http-version").map(str::trim) {
            None | Some("1.1") => false,
            Some("1.0") => true,
            Some(other) => {
                self.warn_ingress(
                    id,
                    &format!("proxy-http-version {other:?} is not 1.0 or 1.1; 1.1 is used"),
                );
                false
            }
        };
        let satisfy_any = match annotations::get(ing, "satisfy").map(str::trim) {
            None | Some("all") => false,
            Some("any") => {
                if basic_auth.is_none() && external_auth.is_none() {
                    self.warn_ingress(
                        id,
                        "satisfy: any without auth-type or auth-url changes nothing",
                    );
                }
                true
            }
            Some(other) => {
                self.warn_ingress(
                    id,
                    &format!("satisfy {other:?} is not all or any; all is used"),
                );
                false
            }
        };
        let error_pages = self.error_pages(id, ing, own_default.as_ref().or(error_backend));
        let use_regex = uses_regex(ing);
        let app_root = self.app_root(id, ing);
        let limit = self.rate_limit(id, ing).map(|l| {
            limits.push((id.clone(), l));
            (limits.len() - 1) as u32
        });
        // Every rule of this Ingress shares them.
        let settings = self.settings(RouteSettings {
            rewrite: rewrite.clone(),
            redirect: redirect.clone(),
            upstream_vhost: upstream_vhost.clone(),
            cors: cors.clone(),
            affinity: affinity.clone(),
            forwarded_prefix: forwarded_prefix.clone(),
            app_root: app_root.clone(),
            allow: allow.clone(),
            deny: deny.clone(),
            client_auth: client_auth.clone(),
            basic_auth: basic_auth.clone(),
            client_cn: client_cn.clone(),
            external_auth: external_auth.clone(),
            upstream_tls: upstream_tls.clone(),
            body_limit,
            read_timeout,
            connect_timeout,
            limit,
            upstream_policy: upstream_policy.clone(),
            access_log_off,
            split: None,
            filters: None,
            response_edit: response_edit.clone(),
            edits: None,
            error_pages: error_pages.clone(),
            hash_by: hash_by.clone(),
            ewma,
            satisfy_any,
            http10,
            snippets: snippets.clone(),
            request_buffer,
            response_buffer,
            otel: otel.clone(),
        });
        IngressRules {
            protocol,
            shared_id,
            refused,
            passthrough,
            client_auth,
            external_auth,
            allow,
            deny,
            own_default,
            service_upstream,
            use_regex,
            settings,
        }
    }
}
