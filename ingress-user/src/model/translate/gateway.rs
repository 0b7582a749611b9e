//! Gateway API → routing rules and status. A GatewayClass is ours by its
//! `controllerName`; our Gateways' listeners on ports 80 and 443 are the
//! agent's HTTP and HTTPS listeners; HTTPRoutes attach to them as the spec
//! says (sectionName/port, allowed namespaces and kinds, hostname
//! intersection) and their rules join the Ingress rules in one table.
//! Every decision is also a status condition, so `xingress check` and the
//! API show why a route is or is not attached.

use std::collections::{BTreeMap, HashMap};

use http::{HeaderName, HeaderValue};
use serde::Serialize;

use super::*;
use crate::model::GatewayPort;
use crate::model::gateway::{
    Filters, GatewayRedirect, GatewayRewrite, HeaderEdit, Mirror, ON_HTTP, ON_HTTPS, PathChange,
    RequestMatch, Split, ValueMatch,
    types::{
        Condition, GROUP, GRPCMethodMatch, GRPCRoute, Gateway, GatewayClassStatus, GatewayStatus,
        HTTPPathMatch, HTTPRoute, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule, Listener,
        ListenerStatus, ParentReference, RouteGroupKind, RouteParentStatus, RouteStatus, TLSRoute,
    },
};

/// `spec.controllerName` of the GatewayClasses that are ours, by default.
pub const DEFAULT_GATEWAY_CONTROLLER: &str = "xingress.dev/gateway-controller";

/// The Gateway listener ports the agent's HTTP and HTTPS listeners serve
/// (whatever `--http-addr` and `--https-addr` bind).
pub const HTTP_PORT: i32 = 80;
/// The route kinds HTTP and HTTPS listeners take.
const ROUTE_KINDS: &[&str] = &["HTTPRoute", "GRPCRoute"];
/// The route kinds TLS (pass-through) listeners take.
const TLS_ROUTE_KINDS: &[&str] = &["TLSRoute"];
pub const HTTPS_PORT: i32 = 443;

/// The status xingress computes for Gateway API objects: what the leader
/// writes, and what `xingress check` prints.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct GatewayReport {
    pub classes: Vec<Named<GatewayClassStatus>>,
    pub gateways: Vec<Named<GatewayStatus>>,
    pub routes: Vec<Named<RouteStatus>>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Named<T> {
    pub kind: &'static str,
    /// `namespace/name` (GatewayClass: its name).
    pub name: String,
    pub status: T,
}

/// What the Gateway API objects add to the table.
#[derive(Default)]
pub(super) struct GatewayRules {
    /// Host, rule, and whether the host is a Gateway wildcard (which also
    /// matches names several labels deep).
    pub rules: Vec<(HostKey, PathRule)>,
    pub tls: Vec<TlsBinding>,
    /// TLSRoutes: server names passed through to their backends.
    pub passthrough: PassthroughOut,
    /// Hostnames of accepted TLS listeners in Passthrough mode (`*`: none).
    pub passthrough_claims: Vec<Box<str>>,
    /// Listener ports other than 80 and 443 (see `RoutingTable::gateway_ports`).
    pub ports: Vec<crate::model::table::GatewayPort>,
    pub report: GatewayReport,
}

/// Server names and what they are passed through to.
type PassthroughOut = Vec<(Box<str>, Arc<Passthrough>)>;

fn cond(
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        observed_generation: generation,
        last_transition_time: String::new(),
        reason: reason.into(),
        message: message.into(),
    }
}

/// An HTTPRoute, or a GRPCRoute read as one (its service/method matches
/// become paths: gRPC calls are `POST /SERVICE/METHOD` over HTTP/2).
struct RouteView<'a> {
    kind: &'static str,
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    parent_refs: &'a [ParentReference],
    hostnames: &'a [String],
    rules: std::borrow::Cow<'a, [HTTPRouteRule]>,
}

impl<'a> RouteView<'a> {
    fn http(r: &'a HTTPRoute) -> Self {
        Self {
            kind: "HTTPRoute",
            meta: &r.metadata,
            parent_refs: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: std::borrow::Cow::Borrowed(&r.spec.rules),
        }
    }

    /// A TLSRoute as a route whose rules have backends only.
    fn tls(r: &'a TLSRoute) -> Self {
        let rules = r
            .spec
            .rules
            .iter()
            .map(|rule| HTTPRouteRule {
                name: rule.name.clone(),
                backend_refs: rule.backend_refs.clone(),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        Self {
            kind: "TLSRoute",
            meta: &r.metadata,
            parent_refs: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: std::borrow::Cow::Owned(rules),
        }
    }

    fn grpc(r: &'a GRPCRoute) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(r.spec.rules.len());
        for rule in &r.spec.rules {
            let mut matches = Vec::new();
            for m in &rule.matches {
                let path = match &m.method {
                    None => None,
                    Some(mm) => Some(grpc_path(mm)?),
                };
                matches.push(HTTPRouteMatch {
                    path,
                    headers: m.headers.clone(),
                    ..Default::default()
                });
            }
            rules.push(HTTPRouteRule {
                name: rule.name.clone(),
                matches,
                filters: rule.filters.clone(),
                backend_refs: rule.backend_refs.clone(),
                timeouts: None,
            });
        }
        Ok(Self {
            kind: "GRPCRoute",
            meta: &r.metadata,
            parent_refs: &r.spec.parent_refs,
            hostnames: &r.spec.hostnames,
            rules: std::borrow::Cow::Owned(rules),
        })
    }
}

/// The path match of a GRPCRoute method match.
fn grpc_path(m: &GRPCMethodMatch) -> Result<HTTPPathMatch, String> {
    let name_ok = |s: &str| !s.is_empty() && !s.contains('/');
    let regex = m.type_.as_deref() == Some("RegularExpression");
    if let Some(t) = m.type_.as_deref()
        && t != "Exact"
        && t != "RegularExpression"
    {
        return Err(format!("method match type {t:?} is not supported"));
    }
    let (value, type_) = match (m.service.as_deref(), m.method.as_deref(), regex) {
        (None, None, _) => return Err("a method match needs a service or a method".into()),
        (Some(s), Some(me), false) if name_ok(s) && name_ok(me) => (format!("/{s}/{me}"), "Exact"),
        (Some(s), None, false) if name_ok(s) => (format!("/{s}"), "PathPrefix"),
        (None, Some(me), false) if name_ok(me) => {
            (format!("/[^/]+/{}", regex::escape(me)), "RegularExpression")
        }
        (s, me, true) => (
            format!("/{}/{}", s.unwrap_or("[^/]+"), me.unwrap_or("[^/]+")),
            "RegularExpression",
        ),
        _ => return Err("a service or method name contains '/'".into()),
    };
    Ok(HTTPPathMatch {
        type_: Some(type_.into()),
        value: Some(value),
    })
}

/// One listener as routes see it.
struct ListenerView<'a> {
    gateway: NamespacedName,
    listener: &'a Listener,
    /// Which agent listener serves it (a `RequestMatch::listeners` bit);
    /// 0: none (not accepted).
    on: u64,
    /// Accepted: routes may attach (a listener with broken certificate
    /// references is still accepted, as the spec says).
    accepted: bool,
    kinds: Vec<RouteGroupKind>,
    hostname: Option<String>,
    attached: i32,
}

/// The intersection of a listener's hostname with a route's hostnames
/// (lowercase; `None` = any host); empty when they do not meet.
fn effective_hosts(listener: Option<&str>, route: &[String]) -> Vec<Option<String>> {
    let route: Vec<String> = route.iter().map(|h| h.to_ascii_lowercase()).collect();
    match (listener, route.is_empty()) {
        (None, true) => vec![None],
        (None, false) => route.into_iter().map(Some).collect(),
        (Some(l), true) => vec![Some(l.to_string())],
        (Some(l), false) => route
            .iter()
            .filter_map(|r| intersect(l, r))
            .map(Some)
            .collect(),
    }
}

/// Whether `name` is covered by the wildcard `*.suffix` (one or more labels).
fn under(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() + 1
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// The more specific of two hostnames when one covers the other.
fn intersect(listener: &str, route: &str) -> Option<String> {
    match (listener.strip_prefix("*."), route.strip_prefix("*.")) {
        (None, None) => (listener == route).then(|| route.to_string()),
        (Some(l), None) => under(route, l).then(|| route.to_string()),
        (None, Some(r)) => under(listener, r).then(|| listener.to_string()),
        (Some(l), Some(r)) => {
            if l == r || under(r, l) {
                Some(route.to_string())
            } else if under(l, r) {
                Some(listener.to_string())
            } else {
                None
            }
        }
    }
}

impl Cx<'_> {
    /// Translates the Gateway API objects: rules for the table, TLS
    /// bindings, and the status of every object of ours.
    pub(super) fn gateway_api(&mut self, opts: &TranslateOptions) -> GatewayRules {
        let objects = self.objects;
        let mut out = GatewayRules::default();
        if objects.gateways.is_empty() && objects.gateway_classes.is_empty() {
            return out;
        }
        let controller = if opts.gateway_controller.is_empty() {
            DEFAULT_GATEWAY_CONTROLLER
        } else {
            opts.gateway_controller.as_str()
        };
        // Classes.
        let mut our_classes: Vec<&str> = Vec::new();
        for (name, class) in &objects.gateway_classes {
            if class.spec.controller_name != controller {
                continue;
            }
            let generation = class.metadata.generation;
            let status = match &class.spec.parameters_ref {
                Some(p) => cond(
                    "Accepted",
                    false,
                    "InvalidParameters",
                    format!(
                        "xingress takes no parameters ({} {} {})",
                        p.group, p.kind, p.name
                    ),
                    generation,
                ),
                None => {
                    our_classes.push(name);
                    cond(
                        "Accepted",
                        true,
                        "Accepted",
                        "served by xingress",
                        generation,
                    )
                }
            };
            let supported = cond(
                "SupportedVersion",
                true,
                "SupportedVersion",
                "gateway.networking.k8s.io/v1",
                generation,
            );
            out.report.classes.push(Named {
                kind: "GatewayClass",
                name: name.clone(),
                status: GatewayClassStatus {
                    conditions: vec![status, supported],
                },
            });
        }
        // Our Gateways, oldest first.
        let mut gateways: Vec<(&NamespacedName, &Gateway)> = objects
            .gateways
            .iter()
            .filter(|(_, g)| our_classes.contains(&g.spec.gateway_class_name.as_str()))
            .filter(|(id, _)| {
                opts.watch_namespace
                    .as_ref()
                    .is_none_or(|ns| *ns == id.namespace)
            })
            .map(|(id, g)| (id, &**g))
            .collect();
        gateways.sort_by(|(a_id, a), (b_id, b)| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a_id.cmp(b_id))
        });
        let our_ids: Vec<NamespacedName> = gateways.iter().map(|(id, _)| (*id).clone()).collect();
        let mut listeners: Vec<ListenerView> = Vec::new();
        let mut statuses: Vec<(NamespacedName, GatewayStatus, Option<i64>)> = Vec::new();
        for (id, gw) in &gateways {
            let (status, views) = self.gateway_status(
                id,
                gw,
                opts,
                (&mut out.tls, &mut out.ports, &mut out.passthrough_claims),
            );
            statuses.push(((*id).clone(), status, gw.metadata.generation));
            listeners.extend(views);
        }
        // Routes (HTTPRoutes and GRPCRoutes), oldest first.
        let watched = |id: &NamespacedName| {
            opts.watch_namespace
                .as_ref()
                .is_none_or(|ns| *ns == id.namespace)
        };
        let mut routes: Vec<(&NamespacedName, RouteView)> = objects
            .http_routes
            .iter()
            .filter(|(id, _)| watched(id))
            .map(|(id, r)| (id, RouteView::http(r)))
            .collect();
        for (id, r) in objects.grpc_routes.iter().filter(|(id, _)| watched(id)) {
            match RouteView::grpc(r) {
                Ok(view) => routes.push((id, view)),
                Err(e) => self.warn_because(
                    format!("GRPCRoute {id}"),
                    &format!("{e}; the route is not served"),
                    "UnsupportedValue",
                ),
            }
        }
        routes.extend(
            objects
                .tls_routes
                .iter()
                .filter(|(id, _)| watched(id))
                .map(|(id, r)| (id, RouteView::tls(r))),
        );
        routes.sort_by(|(a_id, a), (b_id, b)| {
            a.meta
                .creation_timestamp
                .cmp(&b.meta.creation_timestamp)
                .then_with(|| a_id.cmp(b_id))
                .then_with(|| a.kind.cmp(b.kind))
        });
        for (order, (id, route)) in routes.iter().enumerate() {
            let status = self.http_route(
                (id, route),
                &mut listeners,
                (&our_ids, controller),
                order as u32 + 1,
                (&mut out.rules, &mut out.passthrough),
            );
            if !status.parents.is_empty() {
                out.report.routes.push(Named {
                    kind: route.kind,
                    name: id.to_string(),
                    status,
                });
            }
        }
        // Attached route counts into the Gateways' listener status.
        for (id, mut status, _) in statuses {
            for ls in &mut status.listeners {
                ls.attached_routes = listeners
                    .iter()
                    .filter(|l| l.gateway == id && l.listener.name == ls.name)
                    .map(|l| l.attached)
                    .sum();
            }
            out.report.gateways.push(Named {
                kind: "Gateway",
                name: id.to_string(),
                status,
            });
        }
        out
    }

    fn gateway_status<'g>(
        &mut self,
        id: &NamespacedName,
        gw: &'g Gateway,
        opts: &TranslateOptions,
        (tls, ports, claims): (
            &mut Vec<TlsBinding>,
            &mut Vec<GatewayPort>,
            &mut Vec<Box<str>>,
        ),
    ) -> (GatewayStatus, Vec<ListenerView<'g>>) {
        let addresses = &opts.gateway_addresses;
        let generation = gw.metadata.generation;
        let mut status = GatewayStatus {
            addresses: addresses
                .iter()
                .map(|a| crate::model::gateway::types::GatewayAddress {
                    type_: Some(
                        if a.parse::<IpAddr>().is_ok() {
                            "IPAddress"
                        } else {
                            "Hostname"
                        }
                        .into(),
                    ),
                    value: a.clone(),
                })
                .collect(),
            ..Default::default()
        };
        if let Some(p) = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
        {
            let message = format!(
                "xingress takes no infrastructure parameters ({} {} {})",
                p.group, p.kind, p.name
            );
            self.warn_because(format!("Gateway {id}"), &message, "InvalidParameters");
            status.conditions = vec![
                cond(
                    "Accepted",
                    false,
                    "InvalidParameters",
                    message.clone(),
                    generation,
                ),
                cond("Programmed", false, "Invalid", message, generation),
            ];
            return (status, Vec::new());
        }
        let mut views = Vec::new();
        let mut valid = 0;
        // (port, hostname) seen: two listeners alike conflict.
        let mut seen: HashMap<(i32, Option<String>), usize> = HashMap::new();
        for l in &gw.spec.listeners {
            *seen
                .entry((l.port, l.hostname.as_ref().map(|h| h.to_ascii_lowercase())))
                .or_default() += 1;
        }
        for l in &gw.spec.listeners {
            let hostname = l.hostname.as_ref().map(|h| h.to_ascii_lowercase());
            let mut conditions = Vec::new();
            let mut kinds = Vec::new();
            let conflicted = seen
                .get(&(l.port, hostname.clone()))
                .is_some_and(|n| *n > 1);
            let mut on = match (l.protocol.as_str(), l.port) {
                ("HTTP", HTTP_PORT) => ON_HTTP,
                ("HTTPS" | "TLS", HTTPS_PORT) => ON_HTTPS,
                _ => 0,
            };
            let passthrough = l.protocol == "TLS";
            let allowed_kinds = if passthrough {
                TLS_ROUTE_KINDS
            } else {
                ROUTE_KINDS
            };
            let mut accepted = Ok(());
            if !matches!(l.protocol.as_str(), "HTTP" | "HTTPS" | "TLS") {
                accepted = Err((
                    "UnsupportedProtocol",
                    format!(
                        "protocol {} is not served (HTTP, HTTPS and TLS are)",
                        l.protocol
                    ),
                ));
            } else if passthrough
                && l.tls.as_ref().and_then(|t| t.mode.as_deref()) != Some("Passthrough")
            {
                accepted = Err((
                    "UnsupportedValue",
                    "TLS listeners pass TLS through (tls.mode: Passthrough); terminating them is not served".into(),
                ));
            } else if passthrough && on == 0 {
                accepted = Err((
                    "PortUnavailable",
                    format!(
                        "xingress passes TLS through on port {HTTPS_PORT} only (the agent's --https-addr listener)"
                    ),
                ));
            } else if let Some(h) = &hostname
                && !matches!(
                    parse_host(Some(h)),
                    Ok(HostKey::Exact(_) | HostKey::Wildcard(_))
                )
            {
                accepted = Err((
                    "UnsupportedValue",
                    format!("hostname {h:?} is not a DNS name"),
                ));
            } else if !passthrough
                && l.tls
                    .as_ref()
                    .and_then(|t| t.mode.as_deref())
                    .is_some_and(|m| m != "Terminate")
            {
                accepted = Err((
                    "UnsupportedValue",
                    "HTTPS listeners terminate TLS; passthrough is not served yet".into(),
                ));
            }
            // Another port, opened for Gateway routes alone: last, so only
            // a listener valid otherwise opens it.
            if accepted.is_ok() && on == 0 && !conflicted {
                match gateway_port(l, ports, opts.gateway_ports.as_deref()) {
                    Ok(bit) => on = bit,
                    Err(e) => accepted = Err(e),
                }
            }
            let protocol_conflict = matches!(accepted, Err(("ProtocolConflict", _)));
            // Route kinds.
            let mut resolved: Result<(), (&str, String)> = Ok(());
            if accepted.is_ok() {
                match l.allowed_routes.as_ref().and_then(|a| a.kinds.as_ref()) {
                    None => {
                        for kind in allowed_kinds {
                            kinds.push(RouteGroupKind {
                                group: Some(GROUP.into()),
                                kind: (*kind).into(),
                            });
                        }
                    }
                    Some(listed) => {
                        for k in listed {
                            let group = k.group.as_deref().unwrap_or(GROUP);
                            if group == GROUP && allowed_kinds.contains(&k.kind.as_str()) {
                                kinds.push(RouteGroupKind {
                                    group: Some(GROUP.into()),
                                    kind: k.kind.clone(),
                                });
                            } else {
                                resolved = Err((
                                    "InvalidRouteKinds",
                                    format!("route kind {group}/{} is not supported", k.kind),
                                ));
                            }
                        }
                    }
                }
            }
            // Certificates.
            if accepted.is_ok() && l.protocol == "HTTPS" {
                match self.listener_certificate(id, l) {
                    Ok(secret) => {
                        if resolved.is_ok() {
                            tls.push(TlsBinding {
                                kind: "Gateway",
                                ingress: id.clone(),
                                secret: Some(secret),
                                hosts: vec![hostname.clone().unwrap_or_else(|| "*".into())],
                            });
                        }
                    }
                    Err(e) => resolved = Err(e),
                }
            }
            let ok = accepted.is_ok() && !conflicted;
            match &accepted {
                Ok(()) if conflicted => conditions.push(cond(
                    "Accepted",
                    false,
                    "HostnameConflict",
                    "another listener of this Gateway has the same port and hostname",
                    generation,
                )),
                Ok(()) => conditions.push(cond("Accepted", true, "Accepted", "", generation)),
                Err((reason, message)) => {
                    self.warn_because(
                        format!("Gateway {id}"),
                        &format!("listener {}: {message}", l.name),
                        "InvalidListener",
                    );
                    conditions.push(cond("Accepted", false, reason, message.clone(), generation));
                }
            }
            match &resolved {
                Ok(()) => {
                    conditions.push(cond("ResolvedRefs", true, "ResolvedRefs", "", generation))
                }
                Err((reason, message)) => {
                    self.warn_because(
                        format!("Gateway {id}"),
                        &format!("listener {}: {message}", l.name),
                        "InvalidListener",
                    );
                    conditions.push(cond(
                        "ResolvedRefs",
                        false,
                        reason,
                        message.clone(),
                        generation,
                    ));
                }
            }
            let programmed = ok && resolved.is_ok();
            conditions.push(if programmed {
                cond("Programmed", true, "Programmed", "", generation)
            } else {
                cond(
                    "Programmed",
                    false,
                    "Invalid",
                    "see Accepted and ResolvedRefs",
                    generation,
                )
            });
            conditions.push(if protocol_conflict {
                cond("Conflicted", true, "ProtocolConflict", "", generation)
            } else if conflicted {
                cond("Conflicted", true, "HostnameConflict", "", generation)
            } else {
                cond("Conflicted", false, "NoConflicts", "", generation)
            });
            if ok {
                valid += 1;
                if passthrough && resolved.is_ok() {
                    claims.push(hostname.clone().unwrap_or_else(|| "*".into()).into());
                }
            }
            status.listeners.push(ListenerStatus {
                name: l.name.clone(),
                supported_kinds: kinds.clone(),
                attached_routes: 0,
                conditions,
            });
            views.push(ListenerView {
                gateway: id.clone(),
                listener: l,
                on: if ok { on } else { 0 },
                accepted: ok,
                kinds,
                hostname,
                attached: 0,
            });
        }
        let all = gw.spec.listeners.len();
        status.conditions = if valid == 0 {
            vec![
                cond(
                    "Accepted",
                    false,
                    "ListenersNotValid",
                    "no listener is valid",
                    generation,
                ),
                cond(
                    "Programmed",
                    false,
                    "Invalid",
                    "no listener is valid",
                    generation,
                ),
            ]
        } else {
            let (reason, message) = if valid == all {
                ("Accepted", String::new())
            } else {
                (
                    "ListenersNotValid",
                    format!("{} of {all} listeners are not valid", all - valid),
                )
            };
            vec![
                cond("Accepted", true, reason, message, generation),
                cond("Programmed", true, "Programmed", "", generation),
            ]
        };
        (status, views)
    }

    /// The Secret of an HTTPS listener (`tls.certificateRefs[0]`), checked:
    /// a core Secret, granted when in another namespace, present, with a
    /// PEM certificate and key.
    fn listener_certificate(
        &mut self,
        gw: &NamespacedName,
        l: &Listener,
    ) -> Result<NamespacedName, (&'static str, String)> {
        let Some(r) = l.tls.as_ref().and_then(|t| t.certificate_refs.first()) else {
            return Err((
                "InvalidCertificateRef",
                "an HTTPS listener needs tls.certificateRefs".into(),
            ));
        };
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err((
                "InvalidCertificateRef",
                format!(
                    "certificate reference {group}/{kind} {} is not a Secret",
                    r.name
                ),
            ));
        }
        let ns = r.namespace.clone().unwrap_or_else(|| gw.namespace.clone());
        if ns != gw.namespace && !self.granted("Gateway", &gw.namespace, "", "Secret", &ns, &r.name)
        {
            return Err((
                "RefNotPermitted",
                format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    r.name
                ),
            ));
        }
        let id = NamespacedName::new(ns, r.name.clone());
        let Some(secret) = self.objects.secrets.get(&id) else {
            return Err(("InvalidCertificateRef", format!("Secret {id} not found")));
        };
        let pem = |k: &str| super::super::secret_field(secret, k).unwrap_or_default();
        let has = |bytes: &[u8], marker: &[u8]| bytes.windows(marker.len()).any(|w| w == marker);
        if !has(&pem("tls.crt"), b"-----BEGIN CERTIFICATE-----")
            || !has(&pem("tls.key"), b"PRIVATE KEY-----")
        {
            return Err((
                "InvalidCertificateRef",
                format!("Secret {id} has no PEM certificate and key (tls.crt, tls.key)"),
            ));
        }
        Ok(id)
    }

    /// Whether a ReferenceGrant in `to_ns` lets a `from_kind` of `from_ns`
    /// refer to the `to_group`/`to_kind` named `name`.
    fn granted(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        name: &str,
    ) -> bool {
        self.objects
            .reference_grants
            .iter()
            .filter(|(id, _)| id.namespace == to_ns)
            .any(|(_, g)| {
                g.spec
                    .from
                    .iter()
                    .any(|f| f.group == GROUP && f.kind == from_kind && f.namespace == from_ns)
                    && g.spec.to.iter().any(|t| {
                        t.group == to_group
                            && t.kind == to_kind
                            && t.name.as_deref().is_none_or(|n| n == name)
                    })
            })
    }

    /// Whether the Namespace `ns` has the labels `selector` asks for (the
    /// API server's `kubernetes.io/metadata.name` label is implied).
    fn namespace_selected(
        &self,
        ns: &str,
        selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    ) -> bool {
        let Some(selector) = selector else {
            return false;
        };
        let mut labels: BTreeMap<String, String> = self
            .objects
            .namespaces
            .get(ns)
            .and_then(|n| n.metadata.labels.clone())
            .unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".into(), ns.into());
        let by_label = selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
        let by_expr = selector.match_expressions.iter().flatten().all(|e| {
            let have = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => have.is_some_and(|v| values.contains(v)),
                "NotIn" => have.is_none_or(|v| !values.contains(v)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        });
        by_label && by_expr
    }

    /// One HTTPRoute: its parents' status, and its rules on the listeners
    /// it attaches to.
    fn http_route(
        &mut self,
        (id, route): (&NamespacedName, &RouteView),
        listeners: &mut [ListenerView],
        (ours, controller): (&[NamespacedName], &str),
        order: u32,
        (rules_out, passthrough_out): (&mut Vec<(HostKey, PathRule)>, &mut PassthroughOut),
    ) -> RouteStatus {
        let generation = route.meta.generation;
        let object = format!("{} {id}", route.kind);
        let grpc = route.kind == "GRPCRoute";
        let mut status = RouteStatus::default();
        // Rules once, whichever parents they serve.
        let mut built: Vec<BuiltRule> = Vec::new();
        let mut resolved: Result<(), (&'static str, String)> = Ok(());
        let mut dropped: Vec<String> = Vec::new();
        let shared_id = Arc::new(id.clone());
        for (i, rule) in route.rules.iter().enumerate() {
            match self.route_rule((id, route.kind), rule, grpc, &mut resolved) {
                Ok(r) => built.push(r),
                Err(why) => {
                    let message = format!("rule {i} dropped: {why}");
                    self.warn_because(object.clone(), &message, "UnsupportedValue");
                    dropped.push(message);
                }
            }
        }
        if let Err((_, message)) = &resolved {
            self.warn_because(object.clone(), message, "BackendNotResolved");
        }
        // Host → listener mask, per attached parent.
        let mut served: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for parent in route.parent_refs {
            let group = parent.group.as_deref().unwrap_or(GROUP);
            let kind = parent.kind.as_deref().unwrap_or("Gateway");
            if group != GROUP || kind != "Gateway" {
                continue;
            }
            let gw_ns = parent
                .namespace
                .clone()
                .unwrap_or_else(|| id.namespace.clone());
            let gw = NamespacedName::new(gw_ns.clone(), parent.name.clone());
            // Only Gateways of our classes: others are not ours to report on.
            if !ours.contains(&gw) {
                continue;
            }
            let mut by_ref = 0;
            let mut allowed = 0;
            let mut attached = 0;
            for l in listeners.iter_mut().filter(|l| l.gateway == gw) {
                if parent
                    .section_name
                    .as_ref()
                    .is_some_and(|s| *s != l.listener.name)
                    || parent.port.is_some_and(|p| p != l.listener.port)
                {
                    continue;
                }
                by_ref += 1;
                let kind_ok = l.kinds.iter().any(|k| k.kind == route.kind);
                let from = l
                    .listener
                    .allowed_routes
                    .as_ref()
                    .and_then(|a| a.namespaces.as_ref());
                let ns_ok = match from.and_then(|f| f.from.as_deref()).unwrap_or("Same") {
                    "All" => true,
                    "Same" => id.namespace == gw.namespace,
                    "Selector" => self
                        .namespace_selected(&id.namespace, from.and_then(|f| f.selector.as_ref())),
                    _ => false,
                };
                if !(kind_ok && ns_ok && l.accepted) {
                    continue;
                }
                allowed += 1;
                let hosts = effective_hosts(l.hostname.as_deref(), route.hostnames);
                if hosts.is_empty() {
                    continue;
                }
                attached += 1;
                l.attached += 1;
                for h in hosts {
                    *served.entry(h).or_default() |= l.on;
                }
            }
            let accepted = if attached > 0 {
                cond("Accepted", true, "Accepted", "", generation)
            } else if by_ref == 0 {
                cond(
                    "Accepted",
                    false,
                    "NoMatchingParent",
                    "no listener matches the parentRef's sectionName or port",
                    generation,
                )
            } else if allowed == 0 {
                cond(
                    "Accepted",
                    false,
                    "NotAllowedByListeners",
                    "the listeners do not allow this route's namespace or kind",
                    generation,
                )
            } else {
                cond(
                    "Accepted",
                    false,
                    "NoMatchingListenerHostname",
                    "no hostname of the route matches the listeners'",
                    generation,
                )
            };
            if attached == 0 {
                self.warn_because(
                    object.clone(),
                    &format!(
                        "not attached to Gateway {gw}: {} ({})",
                        accepted.message, accepted.reason
                    ),
                    "RouteNotAccepted",
                );
            }
            let mut conditions = vec![accepted];
            conditions.push(match &resolved {
                Ok(()) => cond("ResolvedRefs", true, "ResolvedRefs", "", generation),
                Err((reason, message)) => {
                    cond("ResolvedRefs", false, reason, message.clone(), generation)
                }
            });
            if !dropped.is_empty() {
                conditions.push(cond(
                    "PartiallyInvalid",
                    true,
                    "UnsupportedValue",
                    format!("Dropped Rule: {}", dropped.join("; ")),
                    generation,
                ));
            }
            status.parents.push(RouteParentStatus {
                parent_ref: ParentReference {
                    group: Some(GROUP.into()),
                    kind: Some("Gateway".into()),
                    namespace: Some(gw_ns),
                    name: parent.name.clone(),
                    section_name: parent.section_name.clone(),
                    port: parent.port,
                },
                controller_name: controller.into(),
                conditions,
            });
        }
        if route.kind == "TLSRoute" {
            self.tls_route_out(id, &object, served.into_keys(), &built, passthrough_out);
            return status;
        }
        for (host, mask) in served {
            let key = match host.as_deref() {
                None => HostKey::Any,
                Some(h) => match parse_host(Some(h)) {
                    Ok(k) => k,
                    Err(e) => {
                        self.warn_because(object.clone(), &e, "InvalidHostname");
                        continue;
                    }
                },
            };
            for (rule_index, b) in built.iter().enumerate() {
                // The matches of one rule share its settings.
                let settings = self.settings(RouteSettings {
                    body_limit: self.config.body_limit,
                    read_timeout: b.backend_timeout.or(self.config.read_timeout),
                    connect_timeout: self.config.connect_timeout,
                    upstream_policy: self.config.upstream_policy.clone(),
                    split: b.split.clone(),
                    filters: b.filters.clone(),
                    response_edit: b.filters.as_ref().and_then(|f| f.response_headers.clone()),
                    ewma: self.config.ewma,
                    ..RouteSettings::default()
                });
                for m in &b.matches {
                    let mut matcher = RequestMatch {
                        listeners: mask,
                        ..Default::default()
                    };
                    matcher.method = m.method.clone();
                    matcher.headers.clone_from(&m.headers);
                    matcher.query.clone_from(&m.query);
                    rules_out.push((
                        key.clone(),
                        PathRule {
                            path: m.path.clone(),
                            kind: m.kind,
                            backend: b.backend.clone(),
                            ingress: shared_id.clone(),
                            redirect_https: false,
                            regex: m.regex.clone(),
                            canary: None,
                            matcher: Some(Arc::new(matcher)),
                            stats: 0,
                            settings: settings.clone(),
                            order: order * 1024 + rule_index.min(1023) as u32,
                        },
                    ));
                }
            }
        }
        status
    }

    /// A TLSRoute's server names, passed through to its first rule's
    /// backends (a TLSRoute's rules cannot be told apart: nothing of the
    /// connection but its server name is read).
    fn tls_route_out(
        &mut self,
        id: &NamespacedName,
        object: &str,
        hosts: impl Iterator<Item = Option<String>>,
        built: &[BuiltRule],
        out: &mut PassthroughOut,
    ) {
        let Some(rule) = built.first() else { return };
        if built.len() > 1 {
            self.warn_because(
                object.to_string(),
                "only the first rule of a TLSRoute is served: connections are told apart by server name alone",
                "UnsupportedValue",
            );
        }
        let shared = Arc::new(Passthrough {
            gateway: true,
            backend: rule.backend.clone(),
            split: rule.split.clone(),
            ingress: Arc::new(id.clone()),
            allow: None,
            deny: None,
        });
        for host in hosts {
            match host {
                Some(h) => out.push((h.into_boxed_str(), shared.clone())),
                None => self.warn_because(
                    object.to_string(),
                    "a TLSRoute without hostnames on a listener without one matches no server name; give it hostnames",
                    "UnsupportedValue",
                ),
            }
        }
    }

    /// One rule: its matches, backends and filters; `Err` drops the rule
    /// (an unsupported filter or a bad match). Unresolvable backends keep
    /// the rule (their share of requests gets 500) and set `resolved`.
    fn route_rule(
        &mut self,
        (id, kind_of_route): (&NamespacedName, &'static str),
        rule: &HTTPRouteRule,
        grpc: bool,
        resolved: &mut Result<(), (&'static str, String)>,
    ) -> Result<BuiltRule, String> {
        let mut matches = Vec::new();
        let defaults = [Default::default()];
        let list: &[crate::model::gateway::types::HTTPRouteMatch] = if rule.matches.is_empty() {
            &defaults
        } else {
            &rule.matches
        };
        for m in list {
            let value = m
                .path
                .as_ref()
                .and_then(|p| p.value.as_deref())
                .unwrap_or("/");
            let type_ = m
                .path
                .as_ref()
                .and_then(|p| p.type_.as_deref())
                .unwrap_or("PathPrefix");
            if !value.starts_with('/') {
                return Err(format!("path {value:?} must start with '/'"));
            }
            let (path, kind, regex) = match type_ {
                "Exact" => (value.into(), PathKind::Exact, None),
                "PathPrefix" => {
                    let trimmed = value.trim_end_matches('/');
                    let p = if trimmed.is_empty() { "/" } else { trimmed };
                    (p.into(), PathKind::Prefix, None)
                }
                "RegularExpression" => {
                    let re = regex::Regex::new(&format!("^(?:{value})$"))
                        .map_err(|e| format!("path regular expression {value:?}: {e}"))?;
                    (value.into(), PathKind::Regex, Some(Arc::new(re)))
                }
                other => return Err(format!("path match type {other:?} is not supported")),
            };
            let value_match = |type_: Option<&str>, v: &str| -> Result<ValueMatch, String> {
                match type_.unwrap_or("Exact") {
                    "Exact" => Ok(ValueMatch::Exact(v.into())),
                    "RegularExpression" => regex::bytes::Regex::new(v)
                        .map(ValueMatch::Regex)
                        .map_err(|e| format!("regular expression {v:?}: {e}")),
                    other => Err(format!("match type {other:?} is not supported")),
                }
            };
            let mut headers = Vec::new();
            for h in &m.headers {
                let name = h.name.to_ascii_lowercase();
                // The first match of a name counts (the spec's rule).
                if headers
                    .iter()
                    .any(|(n, _): &(Box<str>, ValueMatch)| **n == *name)
                {
                    continue;
                }
                headers.push((
                    name.into_boxed_str(),
                    value_match(h.type_.as_deref(), &h.value)?,
                ));
            }
            let mut query = Vec::new();
            for q in &m.query_params {
                if query
                    .iter()
                    .any(|(n, _): &(Box<str>, ValueMatch)| **n == *q.name)
                {
                    continue;
                }
                query.push((
                    q.name.clone().into_boxed_str(),
                    value_match(q.type_.as_deref(), &q.value)?,
                ));
            }
            matches.push(BuiltMatch {
                path,
                kind,
                regex,
                method: m.method.clone().map(String::into_boxed_str),
                headers,
                query,
            });
        }
        let mut filters = self.filters(&rule.filters)?;
        // Mirrors resolve like backendRefs (their problems in ResolvedRefs).
        for f in rule.filters.iter().filter(|f| f.type_ == "RequestMirror") {
            let Some(m) = &f.request_mirror else {
                return Err("RequestMirror without requestMirror".into());
            };
            let (num, den) = match (m.percent, &m.fraction) {
                (Some(_), Some(_)) => return Err("a mirror sets both percent and fraction".into()),
                (Some(p), None) => (p, 100),
                (None, Some(f)) => (f.numerator, f.denominator.unwrap_or(100)),
                (None, None) => (100, 100),
            };
            if den < 1 || num < 0 || num > den {
                return Err(format!("mirror fraction {num}/{den} is not within 0..=1"));
            }
            let backend = self.backend_ref((id, kind_of_route), &m.backend_ref, grpc, resolved);
            filters
                .get_or_insert_with(Filters::default)
                .mirrors
                .push(Mirror::new(backend, num as u64, den as u64));
        }
        // `timeouts`: the request's (from arrival, retries included) and
        // each try's (the pod's response head and each body read).
        let mut backend_timeout = None;
        if let Some(t) = &rule.timeouts {
            let request = t
                .request
                .as_deref()
                .map(gateway_duration)
                .transpose()?
                .flatten();
            backend_timeout = t
                .backend_request
                .as_deref()
                .map(gateway_duration)
                .transpose()?
                .flatten();
            if let (Some(r), Some(b)) = (request, backend_timeout)
                && b > r
            {
                return Err(format!(
                    "timeouts.backendRequest {b:?} is longer than timeouts.request {r:?}"
                ));
            }
            if request.is_some() {
                filters.get_or_insert_with(Filters::default).request_timeout = request;
            }
        }
        // Backends.
        let mut backends: Vec<(Arc<Backend>, u32)> = Vec::new();
        for b in &rule.backend_refs {
            let weight = b.weight.unwrap_or(1).max(0) as u32;
            let backend = self.backend_ref((id, kind_of_route), &b.backend, grpc, resolved);
            if !b.filters.is_empty() {
                return Err("filters on a backendRef are not supported".into());
            }
            backends.push((backend, weight));
        }
        let (backend, split) = match backends.len() {
            0 => {
                let what = if filters.as_ref().is_some_and(|f| f.redirect.is_some()) {
                    "redirect"
                } else {
                    "the rule has no backendRefs"
                };
                (
                    Arc::new(Backend::new(
                        id.clone(),
                        String::new(),
                        BackendTarget::Invalid(what),
                    )),
                    None,
                )
            }
            1 if backends[0].1 > 0 => (backends[0].0.clone(), None),
            _ => {
                let first = backends[0].0.clone();
                (first, Some(Arc::new(Split::new(backends))))
            }
        };
        Ok(BuiltRule {
            matches,
            backend,
            split,
            filters: filters.map(Arc::new),
            backend_timeout,
        })
    }

    /// A Service reference of a route (a backendRef, a mirror's): its
    /// backend, or an invalid one answering 500 with `resolved` saying why.
    fn backend_ref(
        &mut self,
        (id, kind_of_route): (&NamespacedName, &'static str),
        r: &crate::model::gateway::types::BackendObjectReference,
        grpc: bool,
        resolved: &mut Result<(), (&'static str, String)>,
    ) -> Arc<Backend> {
        let ns = r.namespace.clone().unwrap_or_else(|| id.namespace.clone());
        let invalid = |what: &'static str| {
            Arc::new(Backend::new(
                NamespacedName::new(ns.clone(), r.name.clone()),
                r.port.map(|p| p.to_string()).unwrap_or_default(),
                BackendTarget::Invalid(what),
            ))
        };
        let group = r.group.as_deref().unwrap_or("");
        let kind = r.kind.as_deref().unwrap_or("Service");
        if !group.is_empty() || kind != "Service" {
            set_first(
                resolved,
                "InvalidKind",
                format!("backendRef {group}/{kind} {} is not a Service", r.name),
            );
            invalid("backend reference of an unsupported kind")
        } else if ns != id.namespace
            && !self.granted(kind_of_route, &id.namespace, "", "Service", &ns, &r.name)
        {
            set_first(
                resolved,
                "RefNotPermitted",
                format!(
                    "Service {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    r.name
                ),
            );
            invalid("cross-namespace reference not granted")
        } else if !self
            .objects
            .services
            .contains_key(&NamespacedName::new(ns.clone(), r.name.clone()))
        {
            set_first(
                resolved,
                "BackendNotFound",
                format!("Service {ns}/{} not found", r.name),
            );
            invalid("Service not found")
        } else if let Some(port) = r.port {
            let svc = NamespacedName::new(ns.clone(), r.name.clone());
            // gRPC is HTTP/2: with prior knowledge to the pod.
            let protocol = if grpc {
                BackendProtocol::H2c
            } else {
                self.app_protocol(&svc, port)
            };
            self.service_backend(&ns, &r.name, PortRef::Number(port), protocol, &|| {
                format!("{kind_of_route} {id}")
            })
        } else {
            set_first(
                resolved,
                "UnsupportedProtocol",
                format!("backendRef to Service {ns}/{} needs a port", r.name),
            );
            invalid("backend reference without a port")
        }
    }

    /// `appProtocol: kubernetes.io/h2c` on the Service port: HTTP/2 with prior knowledge.
    fn app_protocol(&self, svc: &NamespacedName, port: i32) -> BackendProtocol {
        let h2c = self
            .objects
            .services
            .get(svc)
            .and_then(|s| s.spec.as_ref()?.ports.as_ref())
            .and_then(|ports| ports.iter().find(|p| p.port == port))
            .and_then(|p| p.app_protocol.as_deref())
            == Some("kubernetes.io/h2c");
        if h2c {
            BackendProtocol::H2c
        } else {
            BackendProtocol::Http
        }
    }

    fn filters(&mut self, filters: &[HTTPRouteFilter]) -> Result<Option<Filters>, String> {
        if filters.is_empty() {
            return Ok(None);
        }
        let mut out = Filters::default();
        for f in filters {
            match f.type_.as_str() {
                "RequestHeaderModifier" => {
                    out.request_headers = Some(header_edit(f.request_header_modifier.as_ref())?);
                }
                "ResponseHeaderModifier" => {
                    out.response_headers =
                        Some(Arc::new(header_edit(f.response_header_modifier.as_ref())?));
                }
                "RequestRedirect" => {
                    let r = f.request_redirect.clone().unwrap_or_default();
                    let status = r.status_code.unwrap_or(302);
                    if ![301, 302, 303, 307, 308].contains(&status) {
                        return Err(format!("redirect status {status} is not a redirect"));
                    }
                    if let Some(s) = r.scheme.as_deref()
                        && s != "http"
                        && s != "https"
                    {
                        return Err(format!("redirect scheme {s:?} is not http or https"));
                    }
                    out.redirect = Some(GatewayRedirect {
                        scheme: r.scheme.map(String::into_boxed_str),
                        hostname: r.hostname.map(String::into_boxed_str),
                        port: r
                            .port
                            .map(|p| u16::try_from(p).map_err(|_| format!("redirect port {p}")))
                            .transpose()?,
                        path: r.path.as_ref().map(path_change).transpose()?,
                        status: status as u16,
                    });
                }
                "URLRewrite" => {
                    let r = f.url_rewrite.clone().unwrap_or_default();
                    out.rewrite = Some(GatewayRewrite {
                        hostname: r
                            .hostname
                            .map(|h| {
                                HeaderValue::from_str(&h)
                                    .map_err(|_| format!("rewrite hostname {h:?}"))
                            })
                            .transpose()?,
                        path: r.path.as_ref().map(path_change).transpose()?,
                    });
                }
                // Resolved by the caller, which knows the route.
                "RequestMirror" => {}
                other => return Err(format!("filter {other} is not supported")),
            }
        }
        if out.redirect.is_some() && out.rewrite.is_some() {
            return Err("RequestRedirect and URLRewrite cannot be combined".into());
        }
        Ok(Some(out))
    }
}

fn set_first(
    resolved: &mut Result<(), (&'static str, String)>,
    reason: &'static str,
    message: String,
) {
    if resolved.is_ok() {
        *resolved = Err((reason, message));
    }
}

fn header_edit(
    m: Option<&crate::model::gateway::types::HeaderModifier>,
) -> Result<HeaderEdit, String> {
    let Some(m) = m else {
        return Err("header modifier filter without its settings".into());
    };
    let name = |n: &str| {
        HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
            .map_err(|_| format!("header name {n:?}"))
    };
    let value = |v: &str| HeaderValue::from_str(v).map_err(|_| format!("header value {v:?}"));
    Ok(HeaderEdit {
        set: m
            .set
            .iter()
            .map(|h| Ok((name(&h.name)?, value(&h.value)?)))
            .collect::<Result<_, String>>()?,
        add: m
            .add
            .iter()
            .map(|h| Ok((name(&h.name)?, value(&h.value)?)))
            .collect::<Result<_, String>>()?,
        remove: m
            .remove
            .iter()
            .map(|n| name(n))
            .collect::<Result<_, String>>()?,
        rewrite: Vec::new(),
    })
}

fn path_change(p: &crate::model::gateway::types::PathModifier) -> Result<PathChange, String> {
    match p.type_.as_str() {
        "ReplaceFullPath" => Ok(PathChange::Full(
            p.replace_full_path
                .clone()
                .unwrap_or_else(|| "/".into())
                .into_boxed_str(),
        )),
        "ReplacePrefixMatch" => Ok(PathChange::Prefix(
            p.replace_prefix_match
                .clone()
                .unwrap_or_else(|| "/".into())
                .into_boxed_str(),
        )),
        other => Err(format!("path modifier {other:?} is not supported")),
    }
}

struct BuiltMatch {
    path: Box<str>,
    kind: PathKind,
    regex: Option<Arc<regex::Regex>>,
    method: Option<Box<str>>,
    headers: Vec<(Box<str>, ValueMatch)>,
    query: Vec<(Box<str>, ValueMatch)>,
}

struct BuiltRule {
    matches: Vec<BuiltMatch>,
    backend: Arc<Backend>,
    split: Option<Arc<Split>>,
    filters: Option<Arc<Filters>>,
    /// `timeouts.backendRequest`.
    backend_timeout: Option<std::time::Duration>,
}

/// The listener bit of a Gateway listener on a port other than 80 and
/// 443, opening the port (`claims`) the first time a table asks for it.
/// One port speaks one protocol: the oldest Gateway's listener decides.
fn gateway_port(
    l: &Listener,
    ports: &mut Vec<GatewayPort>,
    claims: Option<&dyn PortClaims>,
) -> Result<u64, (&'static str, String)> {
    let tls = l.protocol == "HTTPS";
    let port = u16::try_from(l.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            (
                "PortUnavailable",
                format!("port {} is not a TCP port", l.port),
            )
        })?;
    let bit = |i: usize| 1u64 << (crate::model::gateway::FIRST_PORT_BIT + i as u32);
    if let Some(i) = ports.iter().position(|p| p.port == port) {
        if ports[i].tls != tls {
            return Err((
                "ProtocolConflict",
                format!(
                    "port {port} already serves {} for an older Gateway",
                    if ports[i].tls { "HTTPS" } else { "HTTP" }
                ),
            ));
        }
        return Ok(bit(i));
    }
    if ports.len() == crate::model::gateway::MAX_GATEWAY_PORTS {
        return Err((
            "PortUnavailable",
            format!(
                "the Gateways already open {} ports besides 80 and 443",
                crate::model::gateway::MAX_GATEWAY_PORTS
            ),
        ));
    }
    if let Some(claims) = claims {
        claims
            .claim(port, tls)
            .map_err(|why| ("PortUnavailable", why))?;
    }
    ports.push(GatewayPort { port, tls });
    Ok(bit(ports.len() - 1))
}

/// A Gateway API duration (GEP-2257): one to four `<digits><unit>` with
/// units `h`, `m`, `s`, `ms` (`1h30m`, `500ms`); zero means none.
fn gateway_duration(s: &str) -> Result<Option<std::time::Duration>, String> {
    let bad = || format!("duration {s:?} is not like 10s, 1m30s or 500ms");
    let mut total = std::time::Duration::ZERO;
    let mut rest = s;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (std::time::Duration::from_millis(1), 2)
        } else {
            match rest.as_bytes().first() {
                Some(b'h') => (std::time::Duration::from_secs(3600), 1),
                Some(b'm') => (std::time::Duration::from_secs(60), 1),
                Some(b's') => (std::time::Duration::from_secs(1), 1),
                _ => return Err(bad()),
            }
        };
        total += unit * u32::try_from(n).map_err(|_| bad())?;
        rest = &rest[len..];
        parts += 1;
    }
    if parts == 0 || parts > 4 {
        return Err(bad());
    }
    Ok((!total.is_zero()).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::gateway_duration;
    use std::time::Duration;

    #[test]
    fn gateway_durations_parse_as_gep_2257_says() {
        let ok = |s: &str| gateway_duration(s).unwrap();
        assert_eq!(ok("10s"), Some(Duration::from_secs(10)));
        assert_eq!(ok("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(ok("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(ok("1m1s1ms"), Some(Duration::from_millis(61_001)));
        assert_eq!(ok("0s"), None);
        for bad in [
            "",
            "1d",
            "10",
            "s",
            "1.5s",
            "-1s",
            "123456s",
            "1h1m1s1ms1s",
            "10 s",
        ] {
            assert!(gateway_duration(bad).is_err(), "{bad:?} accepted");
        }
    }
}
