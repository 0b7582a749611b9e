//! Headers set on requests and responses: CORS (`enable-cors`, `cors-*`),
//! header-valued annotations, and `custom-headers`.

use super::*;

impl Cx<'_> {
    /// `enable-cors: "true"` and the `cors-*` settings, ingress-nginx's
    /// defaults for those unset.
    pub(in crate::model::translate) fn cors(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<Cors>> {
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
    pub(in crate::model::translate) fn header_value(
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
    pub(in crate::model::translate) fn custom_headers(
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
}
