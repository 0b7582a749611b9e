//! translate(): objects → RoutingTable. A bad object becomes a warning that
//! names it; every other route is still built.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::{
    core::v1::Service,
    networking::v1::{HTTPIngressPath, Ingress, IngressBackend},
};
use serde::Serialize;

use super::{
    Backend, BackendTarget, BasicAuth, Canary, ClassOptions, ExternalAuth, HostRules,
    NamespacedName, Objects, Passthrough, PathKind, PathRule, RoutingTable,
    annotations::{
        self, Affinity, BackendProtocol, ClientAuth, ClientVerify, Cors, RateLimit, Redirect,
        UpstreamTls,
    },
    basic_auth,
    cidr::{self, Cidr},
    external_auth,
    table::{ANY_HOST_LABEL, RouteLabels, RouteSettings},
};

mod assemble;
mod gateway;
mod hosts;
mod ingress;
mod l4;
mod settings;

use ingress::IngressRules;

pub use gateway::{DEFAULT_GATEWAY_CONTROLLER, GatewayReport};

const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Inputs of translate() that do not come from the objects.
#[derive(Clone, Debug, Default)]
pub struct TranslateOptions {
    pub classes: ClassOptions,
    /// Only Ingresses of this namespace are considered.
    pub watch_namespace: Option<String>,
    /// `--default-backend-service`.
    pub default_backend: Option<NamespacedName>,
    /// `--enable-external-name-services`: off by default, because an
    /// ExternalName Service lets an Ingress author send traffic to any host.
    pub allow_external_name: bool,
    /// `--configmap`: the controller ConfigMap.
    pub configmap: Option<NamespacedName>,
    /// `--tcp-services-configmap` and `--udp-services-configmap`.
    pub tcp_services: Option<NamespacedName>,
    pub udp_services: Option<NamespacedName>,
    /// `spec.controllerName` of our GatewayClasses; empty: the default,
    /// `xingress.dev/gateway-controller`.
    pub gateway_controller: String,
    /// Addresses reported in our Gateways' status (`--publish-address`).
    pub gateway_addresses: Vec<String>,
    /// Opens the ports of Gateway listeners other than 80 and 443, so
    /// their status says whether they could be; `None` (`xingress check`):
    /// assumed open.
    pub gateway_ports: Option<std::sync::Arc<dyn PortClaims>>,
    /// `--hsts*`: what the ConfigMap's `hsts*` keys override.
    pub hsts: super::config::Hsts,
}

/// What opens Gateway listener ports for translate().
pub trait PortClaims: Send + Sync + std::fmt::Debug {
    /// Makes sure `port` can be served (binding it if it is not yet):
    /// `Err` says why not.
    fn claim(&self, port: u16, tls: bool) -> Result<(), String>;
}

/// Something about one object worth telling; with `Severity::Error` the
/// object (or part of it) was skipped, and the rest is served.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Warning {
    /// `Kind namespace/name`, or a file name.
    pub object: String,
    pub message: String,
    pub severity: Severity,
    /// A short PascalCase cause, the `reason` of the Kubernetes Event.
    pub reason: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Served, but worth knowing (deprecated form, feature of a later stage).
    Note,
    /// Skipped or degraded: `xingress check` fails.
    Error,
}

impl Warning {
    pub fn error(object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            message: message.into(),
            severity: Severity::Error,
            reason: "InvalidConfiguration",
        }
    }

    /// The same warning with a more specific reason.
    #[must_use]
    pub fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    pub fn note(object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            object: object.into(),
            message: message.into(),
            severity: Severity::Note,
            reason: "Deprecated",
        }
    }
}

/// `spec.tls[]` of one of our Ingresses: these hosts use this Secret (of the
/// Ingress's own namespace: Secrets are never shared across namespaces).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsBinding {
    /// `Ingress` or `Gateway`: the kind of the object that asks.
    pub kind: &'static str,
    pub ingress: NamespacedName,
    /// `None`: TLS with the default certificate.
    pub secret: Option<NamespacedName>,
    /// Lowercase; wildcards as `*.parent`.
    pub hosts: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Translation {
    pub table: RoutingTable,
    pub warnings: Vec<Warning>,
    /// Oldest Ingress first.
    pub tls: Vec<TlsBinding>,
    /// Our Ingresses, oldest first.
    pub ingresses: Vec<NamespacedName>,
    /// Hosts (wildcards as `*.parent`) whose TLS handshakes ask for a
    /// client certificate, and how; the oldest Ingress's setting per host.
    pub client_auth: Vec<(String, Arc<ClientAuth>)>,
    /// The controller ConfigMap's keys: applied, invalid or ignored.
    pub config_keys: Vec<super::config::KeyStatus>,
    /// Its `log-format-upstream`, if any.
    pub log_template: Option<Arc<super::config::LogTemplate>>,
    /// The ConfigMap's `access-log-path` (`None`: stdout).
    pub access_log_path: Option<std::path::PathBuf>,
    /// The ConfigMap's client-address keys.
    pub client_address: super::config::ClientAddressKeys,
    /// The status of the Gateway API objects of ours.
    pub gateway: gateway::GatewayReport,
}

/// Builds the routing table from the objects.
/// The backend of an Ingress that refuses every request (503): what it
/// asks for cannot be applied.
fn refusal(id: &NamespacedName, what: &'static str) -> Arc<Backend> {
    Arc::new(Backend::new(
        id.clone(),
        String::new(),
        BackendTarget::Unsupported(what),
    ))
}

/// A setting's value; on `Err` the Ingress refuses (the first reason stays).
fn refuse_on_err<T>(
    setting: Result<Option<T>, &'static str>,
    id: &NamespacedName,
    refused: &mut Option<Arc<Backend>>,
) -> Option<T> {
    setting.unwrap_or_else(|what| {
        refused.get_or_insert_with(|| refusal(id, what));
        None
    })
}

pub fn translate(objects: &Objects, opts: &TranslateOptions) -> Translation {
    let mut warnings = Vec::new();
    let (config, config_keys) = controller_config(objects, opts, &mut warnings);
    let mut cx = Cx {
        objects,
        allow_external_name: opts.allow_external_name,
        warnings,
        backends: HashMap::new(),
        key: String::new(),
        slices: index_slices(objects),
        config,
    };
    let ours = cx.our_ingresses(opts);

    // Oldest Ingress first: on a host+path conflict the first one kept wins.
    let mut hosts = hosts::IngressHosts::new();
    let mut default_backend = None;
    let mut tls = Vec::new();
    let mut tls_hosts: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut limits = Vec::new();
    let mut client_auth_hosts: BTreeMap<String, Arc<ClientAuth>> = BTreeMap::new();
    let mut passthroughs: HashMap<Box<str>, Arc<Passthrough>> = HashMap::new();
    // Canary Ingresses attach to the rules of the main ones, after them.
    let (canaries, mains): (Vec<_>, Vec<_>) = ours
        .iter()
        .partition(|(_, ing)| annotations::is(ing, "canary", "true"));
    // `custom-http-errors` without a `default-backend` annotation asks the
    // controller's default backend.
    let error_backend = opts
        .default_backend
        .as_ref()
        .map(|svc| cx.controller_default_backend(svc));
    for &(id, ing) in &mains {
        let spec = ing.spec.as_ref();
        let own = cx.ingress_rules(id, ing, error_backend.as_ref(), &mut limits);
        let IngressRules {
            protocol,
            ref shared_id,
            ref refused,
            passthrough,
            ref client_auth,
            ref external_auth,
            ref allow,
            ref deny,
            use_regex,
            ..
        } = own;
        let backend_of = |cx: &mut Cx, b: &IngressBackend| own.backend(cx, id, b);
        let rule_of =
            |path: Box<str>, kind: PathKind, regex, backend| own.rule(path, kind, regex, backend);
        // The default backend too, as ingress-nginx applies a catch-all
        // Ingress's annotations to it: its access rules hold there.
        if let Some(db) = spec.and_then(|s| s.default_backend.as_ref()) {
            let backend = backend_of(&mut cx, db);
            match &default_backend {
                None => {
                    default_backend = Some((
                        backend.clone(),
                        Some(rule_of("/".into(), PathKind::Prefix, None, backend)),
                    ));
                }
                Some(_) => cx.warn_ingress(
                    id,
                    "defaultBackend ignored: an older Ingress already sets one",
                ),
            }
        }
        let rule_hosts = || -> Vec<String> {
            spec.and_then(|s| s.rules.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|r| r.host.as_deref())
                .map(str::to_ascii_lowercase)
                .collect()
        };
        for t in spec.and_then(|s| s.tls.as_ref()).into_iter().flatten() {
            let mut hosts: Vec<String> = match &t.hosts {
                Some(h) if !h.is_empty() => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                // No hosts: the certificate serves this Ingress's rule hosts.
                _ => rule_hosts(),
            };
            hosts.retain(|h| match parse_host(Some(h)) {
                Ok(HostKey::Exact(_) | HostKey::Wildcard(_)) => true,
                _ => {
                    cx.warn_ingress(
                        id,
                        &format!("TLS host {h:?} is not a valid DNS name; ignored"),
                    );
                    false
                }
            });
            for h in &hosts {
                tls_hosts.insert(h.clone());
            }
            tls.push(TlsBinding {
                kind: "Ingress",
                ingress: id.clone(),
                secret: t
                    .secret_name
                    .as_ref()
                    .filter(|n| !n.is_empty())
                    .map(|n| NamespacedName::new(&id.namespace, n)),
                hosts,
            });
        }
        for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
            let host = match parse_host(rule.host.as_deref()) {
                Ok(h) => h,
                Err(msg) => {
                    cx.warn_ingress(id, &msg);
                    continue;
                }
            };
            let Some(http) = &rule.http else { continue };
            if let Some(auth) = &client_auth {
                cx.client_auth_host(id, &host, auth, &mut client_auth_hosts);
            }
            // `$host` of a host-less rule is whatever the client sends: the
            // client would choose where the auth request goes.
            let auth_host_is_clients = host == HostKey::Any
                && external_auth
                    .as_ref()
                    .is_some_and(|a| a.url.uses(external_auth::Var::Host));
            let rule_refused = auth_host_is_clients.then(|| {
                cx.warn_ingress(
                    id,
                    "auth-url uses $host on a rule without a host, so the client would choose where the auth request goes; that rule's paths answer 503",
                );
                refusal(id, "external authentication that cannot be honoured")
            });
            if passthrough && refused.is_none() {
                cx.add_passthrough(
                    id,
                    &host,
                    &http.paths,
                    shared_id,
                    allow,
                    deny,
                    &mut passthroughs,
                    protocol,
                );
            }
            let slot = hosts.entry(host.clone()).or_default();
            for p in &http.paths {
                let (path, kind, regex) = match rule_path(p, use_regex) {
                    Ok(v) => v,
                    Err(msg) => {
                        cx.warn_ingress(id, &msg);
                        continue;
                    }
                };
                let backend = match &rule_refused {
                    Some(r) => r.clone(),
                    None => backend_of(&mut cx, &p.backend),
                };
                match slot.entry((path, kind)) {
                    std::collections::btree_map::Entry::Occupied(winner) => {
                        let msg = format!(
                            "{host} {} ({kind:?}) is already defined by the older Ingress {}; this one is ignored",
                            winner.key().0,
                            winner.get().ingress
                        );
                        cx.warn_ingress(id, &msg);
                    }
                    std::collections::btree_map::Entry::Vacant(place) => {
                        let path = place.key().0.clone();
                        place.insert(rule_of(path, kind, regex, backend));
                    }
                }
            }
        }
    }
    for &(id, ing) in &canaries {
        cx.attach_canary(id, ing, &mut hosts);
    }
    let forced = hosts::https_redirects(&cx, &ours, &mut hosts, &tls_hosts);
    hosts::server_aliases(&mut cx, &mains, &mut hosts);
    hosts::www_redirects(&mains, &mut hosts);
    if default_backend.is_none()
        && let Some(svc) = &opts.default_backend
    {
        default_backend = Some((cx.controller_default_backend(svc), None));
    }
    // `force-ssl-redirect` holds on a default backend too.
    if let Some((_, Some(rule))) = &mut default_backend {
        rule.redirect_https = forced.contains(&*rule.ingress);
    }
    let (default_backend, default_rule) = default_backend.unzip();
    // Gateway API routes join the Ingress rules host by host (the
    // precedence of `HostRules::new`: path, then the Gateway API's match
    // ranks; a full tie goes to the Ingress).
    let gateway = cx.gateway_api(opts);
    tls.extend(gateway.tls);
    // TLSRoutes after the Ingresses' ssl-passthrough, which keeps a name
    // both claim; the older route keeps one two TLSRoutes claim.
    for (name, p) in gateway.passthrough {
        match passthroughs.get(&name) {
            Some(older) => cx.warn_because(
                format!("TLSRoute {}", p.ingress),
                &format!(
                    "{name} is already passed through for {}; this route's is ignored",
                    older.ingress
                ),
                "HostnameConflict",
            ),
            None => {
                passthroughs.insert(name, p);
            }
        }
    }
    let mut gateway_rules: BTreeMap<HostKey, Vec<PathRule>> = BTreeMap::new();
    for (key, rule) in gateway.rules {
        gateway_rules.entry(key).or_default().push(rule);
    }
    let mut ingress_rules: BTreeMap<HostKey, Vec<PathRule>> = hosts
        .into_iter()
        .map(|(k, rules)| (k, rules.into_values().collect()))
        .collect();
    for (key, rules) in &gateway_rules {
        ingress_rules
            .entry(key.clone())
            .or_default()
            .extend(rules.iter().cloned());
    }
    let hosts = ingress_rules;

    let mut table = RoutingTable {
        gateway_ports: gateway.ports,
        default_backend,
        default_rule: default_rule.flatten(),
        passthrough: passthroughs,
        passthrough_claims: gateway.passthrough_claims,
        labels: Vec::with_capacity(hosts.len() + 1),
        limits,
        ..assemble::base_table(&cx, opts)
    };
    assemble::place_hosts(&mut table, hosts, gateway_rules);
    table.l4 = cx.l4_table(opts);
    Translation {
        table,
        tls,
        warnings: cx.warnings,
        ingresses: ours.into_iter().map(|(id, _)| id.clone()).collect(),
        client_auth: client_auth_hosts.into_iter().collect(),
        config_keys,
        log_template: cx.config.log_template.clone(),
        access_log_path: cx.config.access_log_path.clone(),
        client_address: cx.config.client_address.clone(),
        gateway: gateway.report,
    }
}

/// The controller ConfigMap (`--configmap`), read; its bad keys warned
/// about, its unknown ones noted.
fn controller_config(
    objects: &Objects,
    opts: &TranslateOptions,
    warnings: &mut Vec<Warning>,
) -> (
    super::config::ControllerConfig,
    Vec<super::config::KeyStatus>,
) {
    let Some(id) = &opts.configmap else {
        return Default::default();
    };
    let object = format!("ConfigMap {id}");
    let Some(cm) = objects.config_maps.get(id) else {
        warnings.push(
            Warning::error(
                object,
                "the controller ConfigMap (--configmap) does not exist; ingress-nginx's defaults apply",
            )
            .because("MissingConfigMap"),
        );
        return Default::default();
    };
    let empty = BTreeMap::new();
    let config_maps = |id: &NamespacedName| {
        let cm = objects.config_maps.get(id)?;
        Some(cm.data.clone().unwrap_or_default())
    };
    let (config, keys) = super::config::read(cm.data.as_ref().unwrap_or(&empty), &config_maps);
    for k in &keys {
        match k.status {
            "invalid" => warnings.push(
                Warning::error(object.clone(), format!("key {}: {}", k.key, k.detail))
                    .because("InvalidConfigMapKey"),
            ),
            "ignored" => warnings.push(
                Warning::note(
                    object.clone(),
                    format!("key {} is ignored: {}", k.key, k.detail),
                )
                .because("IgnoredConfigMapKey"),
            ),
            "applied" if !k.detail.is_empty() => warnings.push(
                Warning::note(object.clone(), format!("key {}: {}", k.key, k.detail))
                    .because("PartlyAppliedConfigMapKey"),
            ),
            _ => {}
        }
    }
    if config.otel.enabled && config.otel.host.is_none() {
        warnings.push(
            Warning::error(
                object.clone(),
                "enable-opentelemetry without otlp-collector-host: nothing is traced",
            )
            .because("InvalidConfigMapKey"),
        );
    }
    (config, keys)
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum HostKey {
    Exact(Box<str>),
    /// `*.parent`, keyed by parent.
    Wildcard(Box<str>),
    Any,
}

impl std::fmt::Display for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostKey::Exact(h) => f.write_str(h),
            HostKey::Wildcard(p) => write!(f, "*.{p}"),
            HostKey::Any => f.write_str("*"),
        }
    }
}

fn parse_host(host: Option<&str>) -> Result<HostKey, String> {
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return Ok(HostKey::Any);
    };
    let lower = host.to_ascii_lowercase();
    let (wild, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "rule host {host:?} is not a valid DNS name; rule skipped"
        ));
    }
    if name.parse::<IpAddr>().is_ok()
        || (!wild
            && name
                .split('.')
                .all(|l| l.bytes().all(|b| b.is_ascii_digit())))
    {
        return Err(format!(
            "rule host {host:?} is an IP address, which Ingress does not allow; rule skipped"
        ));
    }
    Ok(if wild {
        HostKey::Wildcard(name.into())
    } else {
        HostKey::Exact(name.into())
    })
}

fn parse_path(path: Option<&str>, path_type: &str) -> Result<(Box<str>, PathKind), String> {
    let kind = match path_type {
        "Exact" => PathKind::Exact,
        "Prefix" | "ImplementationSpecific" => PathKind::Prefix,
        other => {
            return Err(format!(
                "unknown pathType {other:?} (expected Exact, Prefix or ImplementationSpecific); path skipped"
            ));
        }
    };
    let path = match path {
        None | Some("") if path_type == "ImplementationSpecific" => "/",
        None | Some("") => return Err(format!("pathType {path_type} needs a path; path skipped")),
        Some(p) => p,
    };
    if !path.starts_with('/') {
        return Err(format!("path {path:?} must start with '/'; path skipped"));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err(format!(
            "path {path:?} contains characters a request path cannot carry; path skipped"
        ));
    }
    let path = match kind {
        PathKind::Prefix if path.len() > 1 => path.strip_suffix('/').unwrap_or(path),
        _ => path,
    };
    Ok((path.into(), kind))
}

/// `rewrite-target`, when set to something.
fn rewrite_target(ing: &Ingress) -> Option<Arc<str>> {
    annotations::get(ing, "rewrite-target")
        .filter(|t| !t.is_empty())
        .map(Arc::from)
}

/// `use-regex`, which `rewrite-target` implies (as in ingress-nginx).
fn uses_regex(ing: &Ingress) -> bool {
    rewrite_target(ing).is_some() || annotations::is(ing, "use-regex", "true")
}

/// A rule path as the Ingress means it: a regular expression for Prefix
/// and ImplementationSpecific under `use-regex`, else as the spec says.
#[allow(clippy::type_complexity)]
fn rule_path(
    p: &HTTPIngressPath,
    use_regex: bool,
) -> Result<(Box<str>, PathKind, Option<Arc<regex::Regex>>), String> {
    match p.path_type.as_str() {
        "Prefix" | "ImplementationSpecific" if use_regex => regex_path(p.path.as_deref()),
        _ => parse_path(p.path.as_deref(), &p.path_type).map(|(p, k)| (p, k, None)),
    }
}

/// Under `use-regex` (or `rewrite-target`), Prefix and
/// ImplementationSpecific paths are regular expressions: as written (the
/// trailing slash is part of the pattern), case-insensitive, anchored at
/// the start. Exact paths stay exact.
#[allow(clippy::type_complexity)]
fn regex_path(
    written: Option<&str>,
) -> Result<(Box<str>, PathKind, Option<Arc<regex::Regex>>), String> {
    let pattern: Box<str> = written.filter(|w| !w.is_empty()).unwrap_or("/").into();
    if !pattern.starts_with('/') || pattern.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!(
            "path {pattern:?} must start with '/'; path skipped"
        ));
    }
    let compiled = regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| {
            format!("path {pattern:?} is not a regular expression (use-regex): {e}; path skipped")
        })?;
    Ok((pattern, PathKind::Regex, Some(Arc::new(compiled))))
}

type SliceRef<'a> = (&'a NamespacedName, &'a EndpointSlice);

struct Cx<'a> {
    objects: &'a Objects,
    allow_external_name: bool,
    warnings: Vec<Warning>,
    /// One Backend per (namespace, service, port, protocol) so rules share
    /// its balancer, keyed by those four written into `key`.
    backends: HashMap<String, Arc<Backend>>,
    /// Reused for building `backends` keys (a lookup allocates nothing).
    key: String,
    /// EndpointSlices by (namespace, kubernetes.io/service-name).
    slices: HashMap<(&'a str, &'a str), Vec<SliceRef<'a>>>,
    /// The controller ConfigMap's defaults.
    config: super::config::ControllerConfig,
}

fn index_slices(objects: &Objects) -> HashMap<(&str, &str), Vec<SliceRef<'_>>> {
    let mut index: HashMap<_, Vec<_>> = HashMap::new();
    for (id, slice) in &objects.endpoint_slices {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL));
        if let Some(service) = service {
            index
                .entry((id.namespace.as_str(), service.as_str()))
                .or_default()
                .push((id, &**slice));
        }
    }
    index
}

impl<'a> Cx<'a> {
    /// A rule's settings, with every header edit of its requests (the
    /// ConfigMap's and its own) made once.
    fn settings(&self, mut s: RouteSettings) -> Arc<RouteSettings> {
        s.edits = self.edits(s.response_edit.clone());
        Arc::new(s)
    }

    /// The ConfigMap's header edits with a rule's own response edit;
    /// `None`: none at all.
    fn edits(
        &self,
        own: Option<Arc<super::header_rules::HeaderEdit>>,
    ) -> Option<Arc<super::header_rules::Edits>> {
        let e = super::header_rules::Edits {
            request: self.config.request_edit.clone(),
            response: [self.config.response_edit.clone(), own],
        };
        (e != super::header_rules::Edits::default()).then(|| Arc::new(e))
    }

    fn warn(&mut self, object: String, message: &str) {
        self.warn_because(object, message, "InvalidConfiguration");
    }

    fn warn_because(&mut self, object: String, message: &str, reason: &'static str) {
        self.warnings
            .push(Warning::error(object, message).because(reason));
    }

    fn warn_ingress(&mut self, id: &NamespacedName, message: &str) {
        self.warn_because(format!("Ingress {id}"), message, "InvalidIngress");
    }

    /// Our Ingresses, oldest first (creationTimestamp, then namespace/name).
    fn our_ingresses(&mut self, opts: &TranslateOptions) -> Vec<(&'a NamespacedName, &'a Ingress)> {
        let objects = self.objects;
        let default_class = objects.ingress_classes.values().any(|c| {
            c.spec.as_ref().and_then(|s| s.controller.as_deref())
                == Some(&opts.classes.controller_name)
                && c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                    .is_some_and(|v| v == "true")
        });
        let mut ours: Vec<_> = objects
            .ingresses
            .iter()
            .filter(|(id, _)| {
                opts.watch_namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == id.namespace)
            })
            .filter(|(_, ing)| self.is_ours(ing, &opts.classes, default_class))
            .map(|(id, ing)| (id, &**ing))
            .collect();
        ours.sort_by(|(a_id, a), (b_id, b)| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a_id.cmp(b_id))
        });
        ours
    }

    fn is_ours(&self, ing: &Ingress, classes: &ClassOptions, default_class: bool) -> bool {
        if let Some(name) = ing
            .spec
            .as_ref()
            .and_then(|s| s.ingress_class_name.as_deref())
        {
            return self
                .objects
                .ingress_classes
                .get(name)
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.controller.as_deref())
                == Some(classes.controller_name.as_str());
        }
        if let Some(class) = ing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CLASS_ANNOTATION))
        {
            return *class == classes.ingress_class;
        }
        classes.watch_without_class || default_class
    }

    fn backend(
        &mut self,
        id: &NamespacedName,
        protocol: BackendProtocol,
        b: &IngressBackend,
    ) -> Arc<Backend> {
        let Some(svc) = &b.service else {
            let what = if b.resource.is_some() {
                "resource backends are not supported"
            } else {
                "backend names no service"
            };
            self.warn_ingress(id, &format!("{what}; requests to it get 503"));
            return refusal(id, what);
        };
        let port = match svc.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
            Some((Some(n), None)) => PortRef::Number(n),
            Some((None, Some(name))) if !name.is_empty() => PortRef::Name(name.to_string()),
            _ => {
                self.warn_ingress(id, &format!("backend service {} needs exactly one of port.number and port.name; requests to it get 503", svc.name));
                let bad = Backend::new(
                    NamespacedName::new(&id.namespace, &svc.name),
                    String::new(),
                    BackendTarget::MissingService,
                );
                return Arc::new(bad);
            }
        };
        self.service_backend(&id.namespace, &svc.name, port, protocol, &|| {
            format!("Ingress {id}")
        })
    }

    /// `service-upstream`: `backend` sent to its Service's cluster IP and
    /// port (kube-proxy picks the pod); a Service without one (headless)
    /// keeps its endpoints, said.
    fn cluster_ip_backend(&mut self, id: &NamespacedName, backend: Arc<Backend>) -> Arc<Backend> {
        let key = format!(
            "cluster-ip\0{}\0{}\0{}",
            backend.service, backend.port, backend.protocol as u8
        );
        if let Some(b) = self.backends.get(key.as_str()) {
            return b.clone();
        }
        let Some(spec) = self
            .objects
            .services
            .get(&backend.service)
            .and_then(|s| s.spec.as_ref())
        else {
            return backend;
        };
        let ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
        let port = spec.ports.iter().flatten().find(|p| {
            backend.port == p.port.to_string() || p.name.as_deref() == Some(backend.port.as_str())
        });
        let (Some(ip), Some(port)) = (ip, port.and_then(|p| u16::try_from(p.port).ok())) else {
            self.warn_ingress(
                id,
                &format!(
                    "service-upstream: Service {} has no cluster IP (headless?); its endpoints are used",
                    backend.service
                ),
            );
            return backend;
        };
        let b = Arc::new(
            Backend::new(
                backend.service.clone(),
                backend.port.clone(),
                BackendTarget::Endpoints(vec![SocketAddr::new(ip, port)]),
            )
            .with_protocol(backend.protocol),
        );
        self.backends.insert(key, b.clone());
        b
    }

    fn controller_default_backend(&mut self, svc: &NamespacedName) -> Arc<Backend> {
        // The controller's default backend uses port 80 if the Service has it, else its first port.
        let port = self
            .objects
            .services
            .get(svc)
            .and_then(|s| s.spec.as_ref()?.ports.as_ref())
            .map(|ports| {
                if ports.iter().any(|p| p.port == 80) || ports.is_empty() {
                    PortRef::Number(80)
                } else {
                    PortRef::Number(ports[0].port)
                }
            })
            .unwrap_or(PortRef::Number(80));
        self.service_backend(
            &svc.namespace,
            &svc.name,
            port,
            BackendProtocol::Http,
            &|| "--default-backend-service".to_string(),
        )
    }

    /// The shared Backend of a Service port; `who` names the referrer in
    /// warnings (built only when there is one).
    fn service_backend(
        &mut self,
        namespace: &str,
        name: &str,
        port: PortRef,
        protocol: BackendProtocol,
        who: &dyn Fn() -> String,
    ) -> Arc<Backend> {
        self.key.clear();
        self.key.push_str(namespace);
        self.key.push('/');
        self.key.push_str(name);
        self.key.push('\0');
        match &port {
            // Formatting the whole key with write! was ~7% of translate.
            PortRef::Number(n) => {
                if *n < 0 {
                    self.key.push('-');
                }
                let mut digits = [0; 20];
                let len = super::put_decimal(&mut digits, n.unsigned_abs().into());
                self.key
                    .extend(digits[..len].iter().map(|&d| char::from(d)));
            }
            PortRef::Name(p) => {
                self.key.push('n');
                self.key.push_str(p);
            }
        }
        self.key.push('\0');
        self.key.push(char::from(b'0' + protocol as u8));
        if let Some(b) = self.backends.get(self.key.as_str()) {
            return b.clone();
        }
        let key = self.key.clone();
        let service = NamespacedName::new(namespace, name);
        let target = match self.objects.services.get(&service) {
            None => {
                self.warn_because(
                    who(),
                    &format!("Service {service} not found; requests to it get 503"),
                    "ServiceNotFound",
                );
                BackendTarget::MissingService
            }
            Some(svc) => self.resolve(&service, svc, &port, &who()),
        };
        let backend =
            Arc::new(Backend::new(service, port.to_string(), target).with_protocol(protocol));
        self.backends.insert(key, backend.clone());
        backend
    }

    fn resolve(
        &mut self,
        id: &NamespacedName,
        svc: &Service,
        port: &PortRef,
        who: &str,
    ) -> BackendTarget {
        let spec = svc.spec.as_ref();
        let external = spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName");
        if external && !self.allow_external_name {
            self.warn_because(
                who.to_string(),
                &format!("Service {id} is ExternalName, which is off (--enable-external-name-services); requests to it get 503"),
                "ExternalNameDisabled",
            );
            return BackendTarget::Unsupported("ExternalName Services are disabled");
        }
        let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
        let found = ports.iter().find(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(name) => p.name.as_deref() == Some(name.as_str()),
        });
        let Some(service_port) = found else {
            self.warn_because(
                who.to_string(),
                &format!("Service {id} has no port {port}; requests to it get 503"),
                "ServicePortNotFound",
            );
            return BackendTarget::MissingService;
        };
        if external {
            let name = spec.and_then(|s| s.external_name.as_deref()).unwrap_or("");
            return match (parse_host(Some(name)), u16::try_from(service_port.port)) {
                (Ok(HostKey::Exact(host)), Ok(port)) => BackendTarget::External {
                    host: host.into(),
                    port,
                },
                _ => {
                    self.warn(who.to_string(), &format!("Service {id} has an invalid externalName {name:?}; requests to it get 503"));
                    BackendTarget::MissingService
                }
            };
        }
        let port_name = service_port.name.as_deref().unwrap_or("");
        let mut eps = self.slice_endpoints(id, port_name);
        if eps.is_none() {
            eps = self.legacy_endpoints(id, port_name);
        }
        let mut eps = eps.unwrap_or_default();
        eps.sort();
        eps.dedup();
        if eps.is_empty() {
            BackendTarget::NoEndpoints
        } else {
            BackendTarget::Endpoints(eps)
        }
    }

    /// Ready endpoints from EndpointSlices; `None` when the Service has no slice at all.
    fn slice_endpoints(&mut self, id: &NamespacedName, port_name: &str) -> Option<Vec<SocketAddr>> {
        let slices = self
            .slices
            .get(&(id.namespace.as_str(), id.name.as_str()))?
            .clone();
        let mut out = Vec::new();
        for (sid, slice) in slices {
            if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
                self.warn(
                    format!("EndpointSlice {sid}"),
                    &format!(
                        "addressType {} is not supported; slice skipped",
                        slice.address_type
                    ),
                );
                continue;
            }
            let port = slice
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| p.port);
            let Some(port) = port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for ep in &slice.endpoints {
                // A missing `ready` means ready (EndpointConditions API docs).
                if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                    continue;
                }
                for addr in &ep.addresses {
                    match addr.parse::<IpAddr>() {
                        Ok(ip) => out.push(SocketAddr::new(ip, port)),
                        Err(_) => self.warn(
                            format!("EndpointSlice {sid}"),
                            &format!("address {addr:?} is not an IP; skipped"),
                        ),
                    }
                }
            }
        }
        Some(out)
    }

    /// Ready addresses from a v1 Endpoints object of the same name.
    fn legacy_endpoints(
        &mut self,
        id: &NamespacedName,
        port_name: &str,
    ) -> Option<Vec<SocketAddr>> {
        let eps = self.objects.endpoints.get(id)?;
        let mut out = Vec::new();
        for subset in eps.subsets.as_deref().unwrap_or_default() {
            let port = subset
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == port_name)
                .and_then(|p| u16::try_from(p.port).ok());
            let Some(port) = port else { continue };
            for a in subset.addresses.as_deref().unwrap_or_default() {
                match a.ip.parse::<IpAddr>() {
                    Ok(ip) => out.push(SocketAddr::new(ip, port)),
                    Err(_) => self.warn(
                        format!("Endpoints {id}"),
                        &format!("address {:?} is not an IP; skipped", a.ip),
                    ),
                }
            }
        }
        Some(out)
    }
}

#[derive(Clone, Debug)]
enum PortRef {
    Number(i32),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}
