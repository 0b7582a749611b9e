//! The routing model: Kubernetes objects in, an immutable `RoutingTable` out.
//! Pure: no I/O, no clocks, no globals — the same objects give the same table
//! whichever source (files or the API server) delivered them.

pub mod annotation_table;
pub mod annotations;
mod backend;
pub mod basic_auth;
pub mod cidr;
pub mod client_address;
pub mod config;
pub mod external_auth;
pub mod gateway;
pub mod hashing;
pub mod header_rules;
pub mod l4;
pub mod maglev;
pub mod manifest;
mod matching;
pub mod otel;
pub mod path;
pub mod snippet;
mod table;
pub mod template;
pub mod tls_policy;
mod translate;

use std::{collections::BTreeMap, fmt, sync::Arc};

use k8s_openapi::api::{
    core::v1::{ConfigMap, Endpoints, Namespace, Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};

pub use annotations::{BackendProtocol, ClientAuth, ClientVerify, UpstreamTls};
pub use backend::{Backend, BackendError, BackendTarget, Peer};
pub use basic_auth::BasicAuth;
pub use cidr::Cidr;
pub use external_auth::ExternalAuth;
pub use matching::{HOST_BUF_LEN, cookie_value, normalize_host, path_matches};
pub use path::{PathError, normalize_path};
pub use table::{
    ANY_HOST_LABEL, Canary, ErrorPages, GatewayPort, HostRules, Passthrough, PathKind, PathRule,
    Route, RouteLabels, RouteRow, RoutingTable,
};
/// Writes `n` in decimal at the start of `buf` (20 bytes hold any u64);
/// returns the length. For hot paths where `write!` costs too much.
pub fn put_decimal(buf: &mut [u8], mut n: u64) -> usize {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    buf[..len].copy_from_slice(&tmp[i..]);
    len
}

pub use translate::{
    DEFAULT_GATEWAY_CONTROLLER, GatewayReport, PortClaims, Severity, TlsBinding, TranslateOptions,
    Translation, Warning, translate,
};

/// A Secret's fields from `data` and `stringData` (which wins, as the API
/// server merges it on write), sorted by key.
pub fn secret_fields(secret: &Secret) -> Vec<(String, Vec<u8>)> {
    let mut fields: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        fields.insert(k.clone(), v.as_bytes().to_vec());
    }
    fields.into_iter().collect()
}

/// One field of a Secret, as [`secret_fields`] reads it.
pub fn secret_field(secret: &Secret, name: &str) -> Option<Vec<u8>> {
    let from_string = secret.string_data.as_ref().and_then(|d| d.get(name));
    match from_string {
        Some(s) => Some(s.as_bytes().to_vec()),
        None => secret.data.as_ref()?.get(name).map(|b| b.0.clone()),
    }
}

/// `namespace/name` of a namespaced object.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// Parses `NAMESPACE/NAME`; both parts must be non-empty.
    pub fn parse(s: &str) -> Option<Self> {
        let (ns, name) = s.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::new(ns, name))
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which Ingresses are ours (INGRESS-SPEC.md, "Which Ingresses are ours").
#[derive(Clone, Debug)]
pub struct ClassOptions {
    /// Matched against the legacy `kubernetes.io/ingress.class` annotation.
    pub ingress_class: String,
    /// Matched against `IngressClass.spec.controller`.
    pub controller_name: String,
    /// Class-less Ingresses are ours too.
    pub watch_without_class: bool,
}

impl Default for ClassOptions {
    fn default() -> Self {
        Self {
            ingress_class: "xingress".into(),
            controller_name: "xingress.dev/controller".into(),
            watch_without_class: false,
        }
    }
}

/// Every object a source delivered, keyed by namespace/name (IngressClass
/// by name). Objects are shared, not copied: a reload reuses what did not
/// change (file mode's parsed files, Kubernetes mode's reflector stores).
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub ingresses: BTreeMap<NamespacedName, Arc<Ingress>>,
    pub ingress_classes: BTreeMap<String, Arc<IngressClass>>,
    pub services: BTreeMap<NamespacedName, Arc<Service>>,
    pub endpoint_slices: BTreeMap<NamespacedName, Arc<EndpointSlice>>,
    pub endpoints: BTreeMap<NamespacedName, Arc<Endpoints>>,
    pub secrets: BTreeMap<NamespacedName, Arc<Secret>>,
    /// ConfigMaps (the controller's, `--configmap`).
    pub config_maps: BTreeMap<NamespacedName, Arc<ConfigMap>>,
    /// Namespaces, by name: their labels select Gateway API routes
    /// (`allowedRoutes.namespaces.from: Selector`).
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Gateway API objects.
    pub gateway_classes: BTreeMap<String, Arc<gateway::types::GatewayClass>>,
    pub gateways: BTreeMap<NamespacedName, Arc<gateway::types::Gateway>>,
    pub http_routes: BTreeMap<NamespacedName, Arc<gateway::types::HTTPRoute>>,
    pub grpc_routes: BTreeMap<NamespacedName, Arc<gateway::types::GRPCRoute>>,
    pub tls_routes: BTreeMap<NamespacedName, Arc<gateway::types::TLSRoute>>,
    pub reference_grants: BTreeMap<NamespacedName, Arc<gateway::types::ReferenceGrant>>,
}

#[cfg(test)]
mod tests;
