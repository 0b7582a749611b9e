//! Redirects and rewrites: `permanent-redirect` / `temporal-redirect`,
//! `app-root`, and the pod's Location and Set-Cookie rewritten
//! (`proxy-redirect-*`, `proxy-cookie-*`).

use super::*;

impl Cx<'_> {
    /// `permanent-redirect` (301, or `permanent-redirect-code`), else
    /// `temporal-redirect` (302, or `temporal-redirect-code`): an absolute
    /// http(s) URL every request of the Ingress is sent to.
    pub(in crate::model::translate) fn redirect(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<Redirect>> {
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

    /// `proxy-redirect-from`/`-to`, `proxy-cookie-path`, `proxy-cookie-domain`
    /// ("FROM TO", or "off"): parts of the pod's Location, Refresh and
    /// Set-Cookie rewritten.
    pub(in crate::model::translate) fn response_rewrites(
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

    /// `app-root`: a path on the same host that requests for `/` go to.
    pub(in crate::model::translate) fn app_root(
        &mut self,
        id: &NamespacedName,
        ing: &Ingress,
    ) -> Option<Arc<str>> {
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
}
