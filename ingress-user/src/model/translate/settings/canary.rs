//! Canary Ingresses (`canary-*`): their backends attached to the main rules.

use super::*;

impl Cx<'_> {
    /// A canary Ingress: each of its paths gives its backend to the main
    /// rule with the same host and path (its other settings are the main
    /// Ingress's, as in ingress-nginx).
    pub(in crate::model::translate) fn attach_canary(
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
}
