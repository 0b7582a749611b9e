//! nginx snippets (`server-snippet`, `configuration-snippet`, and one
//! snippet annotation of a given scope), when the ConfigMap allows them.

use super::*;

impl Cx<'_> {
    /// `server-snippet` and `configuration-snippet`. `Err` when one is
    /// refused: its paths answer 503 rather than serve without what the
    /// snippet does.
    pub(in crate::model::translate) fn snippets(
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
    pub(in crate::model::translate) fn snippet(
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
}
