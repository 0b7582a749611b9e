//! Who may use an Ingress: source allow and deny lists (`allowlist-source-range`,
//! `denylist-source-range`), rate and connection limits (`limit-*`), and
//! annotations xingress does not implement (refused when they restrict access).

use super::*;

impl Cx<'_> {
    /// The `limit-*` annotations; `None` when the Ingress sets no limit.
    pub(in crate::model::translate) fn rate_limit(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<RateLimit> {
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
    pub(in crate::model::translate) fn allow_list(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<[Cidr]>> {
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
    pub(in crate::model::translate) fn deny_list(
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
    pub(in crate::model::translate) fn check_annotations(
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
}
