//! OpenTelemetry tracing per Ingress (`enable-opentelemetry`,
//! `opentelemetry-trust-incoming-span`).

use super::*;

impl Cx<'_> {
    /// `enable-opentelemetry` and `opentelemetry-trust-incoming-span`: the
    /// Ingress's over the ConfigMap's. Tracing needs `otlp-collector-host`.
    pub(in crate::model::translate) fn otel(
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
}
