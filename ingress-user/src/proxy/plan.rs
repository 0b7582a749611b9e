//! The plan of a request: what routing decided to do with it, as a value
//! either transport carries out (hyper's path writes a `HeaderMap`, the
//! HTTP/1.1 fast path writes bytes); which of them can is decided here, from
//! the plan (`Decision::fast_path_carries`).

use super::*;

/// What the route says to do with a request.
pub(super) enum Decision {
    Forward(Target),
    /// A 3xx to this Location.
    Redirect(StatusCode, HeaderValue),
    /// A CORS preflight (`enable-cors`): 204 with these headers.
    Preflight(Box<http::HeaderMap>),
    /// A snippet's `return` (or redirecting `rewrite`), answered here.
    Reply(Box<Response<ProxyBody>>),
}

impl Decision {
    /// Whether the HTTP/1.1 fast path can carry this plan out; if not,
    /// hyper's path does, with the plan as made. The one place that
    /// decides: the fast path answers redirects and errors itself, and
    /// forwards the request as received (less hop-by-hop fields, plus the
    /// forwarding fields and the header edits every route may have) in
    /// HTTP/1.1 to a plain-HTTP pod by address, streaming the answer back
    /// as it comes. Anything in `Changes` is hyper's.
    pub(super) fn fast_path_carries(&self) -> bool {
        match self {
            Decision::Redirect(..) => true,
            Decision::Preflight(_) | Decision::Reply(_) => false,
            Decision::Forward(t) => {
                matches!(t.peer, Peer::Addr(_))
                    && t.backend.protocol == BackendProtocol::Http
                    && t.changes.is_none()
                    && t.request_timeout.is_none()
                    && !t.http10
            }
        }
    }
}

/// A request routed on one path and carried out on another: the HTTP/1.1
/// fast path decided it, and hands it to hyper's path with the connection,
/// so that limits, balancers and canary weights count it once.
pub(super) struct Routed {
    pub(super) decision: Result<Decision, ProxyError>,
    pub(super) stats: Arc<RouteStats>,
    /// The request is logged (not `enable-access-log: "false"`).
    pub(super) log: bool,
}

/// Where a request goes, and what the rule says about it.
pub(super) struct Target {
    pub(super) peer: Peer,
    pub(super) backend: Arc<Backend>,
    pub(super) body_limit: Option<u64>,
    /// The pod must send the response head, and each read of the body,
    /// within this (the rule's `proxy-read-timeout`, else the default).
    pub(super) read_timeout: std::time::Duration,
    /// What the pod gets other than the request as received; only for
    /// routes that ask (hyper's path serves them), boxed so the common
    /// target stays small.
    pub(super) changes: Option<Box<Changes>>,
    /// Counts the request against its source's `limit-connections` until
    /// the response body ends (or the upgraded connection closes).
    pub(super) in_flight: Option<LimitGuard>,
    /// `proxy-ssl-*`: how an HTTPS pod is checked.
    pub(super) upstream_tls: Option<Arc<crate::model::UpstreamTls>>,
    /// `proxy-connect-timeout`; `None`: the agent's default.
    pub(super) connect_timeout: Option<std::time::Duration>,
    /// The request target (path and query) the pod gets when normalising
    /// the path changed it; `None`: as sent.
    pub(super) normalized: Option<Box<str>>,
    /// Retries and passive health; `None`: the defaults.
    pub(super) policy: Option<Arc<UpstreamPolicy>>,
    /// Gateway API `timeouts.request`: the response head must come within
    /// this of the request's arrival (else 504).
    pub(super) request_timeout: Option<std::time::Duration>,
    /// Header edits either transport carries out (the rule's, decided
    /// with the snapshot).
    pub(super) edits: Option<Arc<Edits>>,
    /// The Ingress (or Gateway API route) of the rule, for the log.
    pub(super) ingress: Option<Arc<crate::model::NamespacedName>>,
    /// `load-balance: ewma`: the pod's latency is measured.
    pub(super) ewma: bool,
    /// `proxy-http-version: "1.0"`.
    pub(super) http10: bool,
}

impl Target {
    pub(super) fn policy(&self) -> &UpstreamPolicy {
        self.policy.as_deref().unwrap_or(&DEFAULT_UPSTREAM_POLICY)
    }

    /// How this route reaches its pods: for an HTTPS pod the Ingress's
    /// check and the name its certificate must carry (`proxy-ssl-name`,
    /// else the Service's `NAME.NAMESPACE.svc`); its connect timeout.
    pub(super) fn via(&self) -> upstream::Via<'_> {
        let verify = self.upstream_tls.as_ref().map(|tls| {
            let name = tls.name.clone().unwrap_or_else(|| {
                let svc = &self.backend.service;
                format!("{}.{}.svc", svc.name, svc.namespace)
            });
            (tls, name)
        });
        upstream::Via {
            verify,
            connect_timeout: self.connect_timeout,
            keepalive: Keepalive::default(),
        }
    }
}

/// What a route changes in the request on its way to the pod.
#[derive(Default)]
pub(super) struct Changes {
    /// The route asks for client certificates: what the pod is told
    /// (`ssl-client-verify`, and `ssl-client-cert` when passed on).
    pub(super) client_cert: Option<ClientCertHeaders>,
    /// `rewrite-target`: the request target the pod gets instead.
    pub(super) rewritten: Option<String>,
    /// `upstream-vhost`: the Host header the pod gets.
    pub(super) host: Option<HeaderValue>,
    /// `x-forwarded-prefix`.
    pub(super) forwarded_prefix: Option<HeaderValue>,
    /// `enable-cors`: added to the pod's response.
    pub(super) cors: Option<http::HeaderMap>,
    /// `affinity: cookie`: the cookie that makes the client stick to the
    /// endpoint picked, added to the pod's response.
    pub(super) set_cookie: Option<HeaderValue>,
    /// `auth-url`: asked before the pod.
    pub(super) external_auth: Option<Arc<crate::model::ExternalAuth>>,
    /// Gateway API header modifiers of the request and the response.
    pub(super) filters: Option<Arc<crate::model::gateway::Filters>>,
    /// `custom-http-errors`, and the Ingress the route is of.
    pub(super) error_pages: Option<(
        Arc<crate::model::ErrorPages>,
        Arc<crate::model::NamespacedName>,
    )>,
    /// A snippet's header edits of the request and of the response.
    pub(super) snippet: Option<(crate::model::snippet::Edit, crate::model::snippet::Edit)>,
    /// `proxy-request-buffering: on`: bytes of the body kept in memory.
    pub(super) request_buffer: Option<u32>,
    /// `proxy-buffering: on`: bytes of the response read ahead.
    pub(super) response_buffer: Option<u32>,
    /// `enable-opentelemetry`: the rule's tracing, where its spans go, and
    /// the rule's path (the span's `http.route`).
    pub(super) otel: Option<(
        Arc<crate::model::otel::OtelRoute>,
        Arc<crate::model::otel::OtelExport>,
        Box<str>,
    )>,
}

impl Changes {
    pub(super) fn is_empty(&self) -> bool {
        self.client_cert.is_none()
            && self.rewritten.is_none()
            && self.host.is_none()
            && self.forwarded_prefix.is_none()
            && self.cors.is_none()
            && self.set_cookie.is_none()
            && self.external_auth.is_none()
            && self.filters.is_none()
            && self.error_pages.is_none()
            && self.snippet.is_none()
            && self.request_buffer.is_none()
            && self.response_buffer.is_none()
            && self.otel.is_none()
    }
}

/// What the pod is told about the client's certificate (`ssl-client-*`).
pub(super) struct ClientCertHeaders {
    pub(super) verify: HeaderValue,
    pub(super) cert: Option<HeaderValue>,
    pub(super) subject: Option<HeaderValue>,
}
