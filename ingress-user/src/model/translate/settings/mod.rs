//! An Ingress's settings from its annotations (methods of `Cx`): each
//! reads one annotation family into a typed value, and for a bad value
//! warns and says what is used instead, so one bad annotation never costs
//! the Ingress anything else.
//!
//! Each submodule reads one concern; this module keeps the helpers they
//! share.

use super::*;

mod access;
mod auth;
mod body;
mod canary;
mod error_pages;
mod headers;
mod otel;
mod redirects;
mod snippets;
mod tls;
mod upstream;

impl Cx<'_> {
    /// `NAME` or `NAMESPACE/NAME` of a Secret in the Ingress's own namespace
    /// (Secrets are never shared across namespaces); warns otherwise.
    fn own_secret(
        &mut self,
        id: &NamespacedName,
        annotation: &str,
        value: &str,
    ) -> Option<NamespacedName> {
        match value.split_once('/') {
            None if !value.is_empty() => Some(NamespacedName::new(&id.namespace, value)),
            Some((ns, name)) if ns == id.namespace && !name.is_empty() => {
                Some(NamespacedName::new(ns, name))
            }
            _ => {
                self.warn_ingress(
                    id,
                    &format!(
                        "{annotation} {value:?} must name a Secret of the Ingress's own namespace ({}); its paths answer 503",
                        id.namespace
                    ),
                );
                None
            }
        }
    }
}
