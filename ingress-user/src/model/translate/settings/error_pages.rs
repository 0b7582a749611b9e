//! Error pages: `custom-http-errors` and the error backend (`default-backend`).

use super::*;

impl Cx<'_> {
    /// The `default-backend` annotation: a Service in the Ingress's
    /// namespace (port 80 or its first).
    pub(in crate::model::translate) fn annotation_default_backend(
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
    pub(in crate::model::translate) fn error_pages(
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
}
