//! How requests reach the pods: `backend-protocol`, timeouts, the retry
//! policy (`proxy-next-upstream*`, `upstream-*`), load balancing, hashing
//! (`upstream-hash-by`) and cookie affinity.

use super::*;

impl Cx<'_> {
    /// `affinity: cookie` and its `session-cookie-*` settings.
    pub(in crate::model::translate) fn affinity(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<Affinity>> {
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

    /// `load-balance` (else the ConfigMap's): `true` for `ewma`.
    pub(in crate::model::translate) fn load_balance(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> bool {
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
    pub(in crate::model::translate) fn hash_by(
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

    /// A timeout annotation in whole seconds, as ingress-nginx takes it
    /// (`proxy-read-timeout`, `proxy-connect-timeout`); `None` when unset
    /// or bad (warned): the agent's default.
    pub(in crate::model::translate) fn seconds(
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
    pub(in crate::model::translate) fn upstream_policy(
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

    /// The Ingress's `backend-protocol`, read once for all its backends.
    pub(in crate::model::translate) fn protocol(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> BackendProtocol {
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
