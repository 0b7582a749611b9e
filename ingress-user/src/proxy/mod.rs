//! The L7 proxy: accept (plain or TLS), route on the live snapshot, forward
//! to a pod, stream back.
//!
//! Phases per request (pingora's naming): pick route → pick peer (or
//! redirect) → filter request → forward → filter response (→ upgrade
//! tunnel); an error's source decides its status.

mod abort;
pub mod access_log;
mod body;
mod conn_watch;
mod error;
mod ewma;
mod external_auth;
pub mod guard;
mod h1;
mod health;
pub mod passthrough;
pub mod ports;
pub mod proxy_protocol;
mod retry;
pub use h1::Keepalive;
#[doc(hidden)]
pub use h1::fuzz as h1_fuzz;
pub mod headers;
mod otel;
mod rewind;
mod server;
mod spool;
mod upstream;

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode, Uri, Version,
    header::{CONNECTION, HOST, LOCATION, UPGRADE},
};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

pub use error::{CertRefusal, ErrorSource, ProxyError};
pub use server::{serve_http, serve_https};
pub use upstream::Upstream;

use crate::{
    config::ProxyLimits,
    dataplane::FlowTable,
    limit::LimitGuard,
    metrics::{Metrics, RouteStats},
    model::{
        Backend, BackendProtocol, HOST_BUF_LEN, Peer,
        annotations::{
            DEFAULT_BODY_LIMIT, DEFAULT_UPSTREAM_POLICY, NEXT_ERROR, NEXT_TIMEOUT, UpstreamPolicy,
        },
        cookie_value,
        header_rules::Edits,
        normalize_host, normalize_path,
    },
    snapshot::SnapshotCell,
    tls::ClientCert,
};
use body::{RequestBody, ResponseBody};
use headers::Downstream;

/// Response body: streamed from upstream, or a small local page.
pub type ProxyBody = Either<ResponseBody, Full<Bytes>>;

/// Shared, read-only state of every connection.
pub struct Proxy {
    pub snapshots: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    /// Idle HTTP/1.1 connections to pods, for the fast path.
    pool: h1::Pool,
    pub limits: ProxyLimits,
    /// Port of the HTTPS listener, for redirects; `None` when there is none.
    pub https_port: Option<u16>,
    /// XDP's flow table, to record the agent's verdict on UNDECIDED flows.
    pub flows: Option<FlowTable>,
    /// Addresses never connected to (the agent's own listeners, ...).
    pub guard: Arc<guard::UpstreamGuard>,
    /// Passive health of endpoints (`upstream-max-fails`).
    health: health::Health,
    /// `load-balance: ewma`: the endpoints' measured latencies.
    ewma: ewma::Ewma,
    /// The access log; `None`: `--access-log off`.
    pub access_log: Option<Arc<access_log::AccessLog>>,
    /// Where the client's address comes from.
    /// The flags' client-address rules (`--use-proxy-protocol`,
    /// `--use-forwarded-headers`, ...), which the ConfigMap's keys
    /// override in each snapshot (`Proxy::client_address`).
    pub client_address_flags: Arc<headers::ClientAddress>,
    /// Where traced requests' spans go (`enable-opentelemetry`).
    otel: otel::Exporters,
    /// The TLS config of the ConfigMap's TLS policy, made when it changes.
    tls_policy: std::sync::Mutex<
        Option<(
            Arc<crate::model::tls_policy::TlsPolicy>,
            tokio_rustls::TlsAcceptor,
        )>,
    >,
}

/// Per-connection state.
#[derive(Debug, Default)]
pub struct ConnState {
    /// The first request's verdict was reported to XDP.
    flow_reported: std::sync::atomic::AtomicBool,
    /// The TLS handshake asked for a client certificate (its SNI names a
    /// host with `auth-tls-*`): what it asked, and what came. Boxed: most
    /// connections have none, and each connection keeps this state.
    client_cert: Option<Box<ClientCert>>,
    /// TLS with ALPN `h2`: hyper serves the connection from the start.
    alpn_h2: bool,
}

impl ConnState {
    pub fn with_client_cert(cert: ClientCert) -> Self {
        Self {
            client_cert: Some(Box::new(cert)),
            ..Self::default()
        }
    }
}

/// What the route says to do with a request.
enum Decision {
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
    fn fast_path_carries(&self) -> bool {
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
    decision: Result<Decision, ProxyError>,
    stats: Arc<RouteStats>,
    /// The request is logged (not `enable-access-log: "false"`).
    log: bool,
}

/// Where a request goes, and what the rule says about it.
struct Target {
    peer: Peer,
    backend: Arc<Backend>,
    body_limit: Option<u64>,
    /// The pod must send the response head, and each read of the body,
    /// within this (the rule's `proxy-read-timeout`, else the default).
    read_timeout: std::time::Duration,
    /// What the pod gets other than the request as received; only for
    /// routes that ask (hyper's path serves them), boxed so the common
    /// target stays small.
    changes: Option<Box<Changes>>,
    /// Counts the request against its source's `limit-connections` until
    /// the response body ends (or the upgraded connection closes).
    in_flight: Option<LimitGuard>,
    /// `proxy-ssl-*`: how an HTTPS pod is checked.
    upstream_tls: Option<Arc<crate::model::UpstreamTls>>,
    /// `proxy-connect-timeout`; `None`: the agent's default.
    connect_timeout: Option<std::time::Duration>,
    /// The request target (path and query) the pod gets when normalising
    /// the path changed it; `None`: as sent.
    normalized: Option<Box<str>>,
    /// Retries and passive health; `None`: the defaults.
    policy: Option<Arc<UpstreamPolicy>>,
    /// Gateway API `timeouts.request`: the response head must come within
    /// this of the request's arrival (else 504).
    request_timeout: Option<std::time::Duration>,
    /// Header edits either transport carries out (the rule's, decided
    /// with the snapshot).
    edits: Option<Arc<Edits>>,
    /// The Ingress (or Gateway API route) of the rule, for the log.
    ingress: Option<Arc<crate::model::NamespacedName>>,
    /// `load-balance: ewma`: the pod's latency is measured.
    ewma: bool,
    /// `proxy-http-version: "1.0"`.
    http10: bool,
}

impl Target {
    fn policy(&self) -> &UpstreamPolicy {
        self.policy.as_deref().unwrap_or(&DEFAULT_UPSTREAM_POLICY)
    }

    /// How this route reaches its pods: for an HTTPS pod the Ingress's
    /// check and the name its certificate must carry (`proxy-ssl-name`,
    /// else the Service's `NAME.NAMESPACE.svc`); its connect timeout.
    fn via(&self) -> upstream::Via<'_> {
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
struct Changes {
    /// The route asks for client certificates: what the pod is told
    /// (`ssl-client-verify`, and `ssl-client-cert` when passed on).
    client_cert: Option<ClientCertHeaders>,
    /// `rewrite-target`: the request target the pod gets instead.
    rewritten: Option<String>,
    /// `upstream-vhost`: the Host header the pod gets.
    host: Option<HeaderValue>,
    /// `x-forwarded-prefix`.
    forwarded_prefix: Option<HeaderValue>,
    /// `enable-cors`: added to the pod's response.
    cors: Option<http::HeaderMap>,
    /// `affinity: cookie`: the cookie that makes the client stick to the
    /// endpoint picked, added to the pod's response.
    set_cookie: Option<HeaderValue>,
    /// `auth-url`: asked before the pod.
    external_auth: Option<Arc<crate::model::ExternalAuth>>,
    /// Gateway API header modifiers of the request and the response.
    filters: Option<Arc<crate::model::gateway::Filters>>,
    /// `custom-http-errors`, and the Ingress the route is of.
    error_pages: Option<(
        Arc<crate::model::ErrorPages>,
        Arc<crate::model::NamespacedName>,
    )>,
    /// A snippet's header edits of the request and of the response.
    snippet: Option<(crate::model::snippet::Edit, crate::model::snippet::Edit)>,
    /// `proxy-request-buffering: on`: bytes of the body kept in memory.
    request_buffer: Option<u32>,
    /// `proxy-buffering: on`: bytes of the response read ahead.
    response_buffer: Option<u32>,
    /// `enable-opentelemetry`: the rule's tracing, where its spans go, and
    /// the rule's path (the span's `http.route`).
    otel: Option<(
        Arc<crate::model::otel::OtelRoute>,
        Arc<crate::model::otel::OtelExport>,
        Box<str>,
    )>,
}

impl Changes {
    fn is_empty(&self) -> bool {
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

/// A client connection's limits under the live configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub header_timeout: std::time::Duration,
    pub keep_alive: std::time::Duration,
    pub requests: Option<u32>,
    /// The largest request head.
    pub max_head: usize,
}

/// What routing needs of a request besides its host and target, looked up
/// only for routes that ask (CORS, affinity).
struct RequestView<'a> {
    /// The request method (Gateway API method matches).
    method: &'a str,
    /// OPTIONS: a CORS preflight on a route with `enable-cors`.
    options: bool,
    /// The first value of the named header.
    header: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// The value of the named cookie.
    cookie: &'a dyn Fn(&str) -> Option<&'a [u8]>,
    /// Set by routing: the rule says `enable-access-log: "false"`.
    log_off: std::cell::Cell<bool>,
}

/// A request as the Gateway API's matches see it.
struct MatchView<'v, 'a> {
    view: &'v RequestView<'a>,
    query: Option<&'v str>,
    /// The listener bit of the connection (`RoutingTable::listener_bit`).
    listener: u64,
}

impl crate::model::gateway::MatchInput for MatchView<'_, '_> {
    fn method(&self) -> &str {
        self.view.method
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        (self.view.header)(name)
    }
    fn query(&self) -> Option<&str> {
        self.query
    }
    fn listener(&self) -> Option<u64> {
        Some(self.listener)
    }
}

/// The Access-Control headers for a request from `origin` (`None` when
/// the route's CORS does not cover it), for a preflight or a response.
fn cors_headers(
    cors: &crate::model::annotations::Cors,
    origin: Option<&[u8]>,
    preflight: bool,
) -> Option<http::HeaderMap> {
    use http::header::{
        ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
        ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
        ACCESS_CONTROL_MAX_AGE, VARY,
    };
    let mut h = http::HeaderMap::new();
    if cors.origins.is_empty() {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    } else {
        let origin = origin
            .and_then(|o| std::str::from_utf8(o).ok())
            .filter(|o| cors.allows(o))?;
        h.insert(
            ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_str(origin).ok()?,
        );
        // The answer depends on the Origin: caches must key on it.
        h.insert(VARY, HeaderValue::from_static("Origin"));
    }
    if cors.credentials {
        h.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    let text = |v: &str| HeaderValue::from_str(v).ok();
    if preflight {
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, text(&cors.methods)?);
        h.insert(ACCESS_CONTROL_ALLOW_HEADERS, text(&cors.headers)?);
        h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(cors.max_age));
    } else if let Some(expose) = &cors.expose {
        h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, text(expose)?);
    }
    Some(h)
}

/// Whether the connection carries what `required` asks for; if so, the
/// `ssl-client-verify` and `ssl-client-cert` values for the pod.
fn client_cert_headers(
    down: &Downstream,
    conn: &ConnState,
    required: &crate::model::ClientAuth,
    match_cn: Option<&regex::Regex>,
) -> Result<ClientCertHeaders, CertRefusal> {
    let Some(cert) = &conn.client_cert else {
        return Err(if down.tls {
            CertRefusal::Misdirected
        } else {
            CertRefusal::NotTls
        });
    };
    if *cert.asked != *required {
        return Err(CertRefusal::Misdirected);
    }
    if cert.leaf.is_none() && required.verify == crate::model::ClientVerify::On {
        return Err(CertRefusal::Missing);
    }
    // `auth-tls-match-cn`: the subject must match, as nginx's
    // `$ssl_client_s_dn !~ pattern` → 403.
    if let Some(pattern) = match_cn
        && !cert.subject.as_deref().is_some_and(|s| pattern.is_match(s))
    {
        return Err(CertRefusal::Subject);
    }
    let verify = HeaderValue::from_str(&cert.verify)
        .unwrap_or(HeaderValue::from_static("FAILED:unprintable reason"));
    let subject = cert
        .subject
        .as_deref()
        .and_then(|s| HeaderValue::from_str(s).ok());
    Ok(ClientCertHeaders {
        verify,
        cert: cert.escaped.clone(),
        subject,
    })
}

/// What the pod is told about the client's certificate (`ssl-client-*`).
struct ClientCertHeaders {
    verify: HeaderValue,
    cert: Option<HeaderValue>,
    subject: Option<HeaderValue>,
}

/// How the proxy is set up (from the command line).
pub struct ProxySettings {
    pub limits: ProxyLimits,
    /// Port of the HTTPS listener, for redirects.
    pub https_port: Option<u16>,
    pub guard: guard::UpstreamGuard,
    pub access_log: Option<Arc<access_log::AccessLog>>,
    pub client_address: headers::ClientAddress,
}

impl Proxy {
    pub fn new(
        snapshots: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        flows: Option<FlowTable>,
        settings: ProxySettings,
    ) -> Arc<Self> {
        let ProxySettings {
            limits,
            https_port,
            guard,
            access_log,
            client_address,
        } = settings;
        let guard = Arc::new(guard);
        Arc::new(Self {
            upstream: Upstream::new(&limits, guard.clone()),
            guard,
            health: health::Health::new(metrics.clone()),
            ewma: ewma::Ewma::default(),
            otel: otel::Exporters::default(),
            tls_policy: std::sync::Mutex::new(None),
            access_log,
            client_address_flags: Arc::new(client_address),
            pool: h1::Pool::new(limits.upstream_idle_timeout),
            snapshots,
            metrics,
            limits,
            https_port,
            flows,
        })
    }

    /// Closes idle pod connections past `--upstream-idle-timeout` (run once
    /// per agent).
    pub async fn sweep_idle(self: Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        let period = (self.limits.upstream_idle_timeout / 2).max(std::time::Duration::from_secs(1));
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {
                    let keep = self.snapshots.load().table.upstream_keepalive;
                    let closed = self.pool.sweep(keep.timeout);
                    if closed > 0 {
                        tracing::debug!(closed, "closed idle pod connections");
                    }
                }
                () = shutdown.wait() => return,
            }
        }
    }

    /// Serves one request; never fails (errors become status pages).
    /// `routed`: the fast path already routed it (the first request of a
    /// connection it handed over).
    pub(super) async fn handle(
        self: &Arc<Self>,
        down: Downstream,
        conn: &ConnState,
        req: Request<Incoming>,
        routed: Option<Box<Routed>>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let started = Instant::now();
        let method_name = req.method().clone();
        let request_length = request_length(&req);
        let rules = self.client_address();
        let down = Self::request_downstream(
            &rules,
            down,
            req.headers()
                .get_all(rules.forwarded_for_header())
                .iter()
                .map(HeaderValue::as_bytes),
        );
        let (decision, stats, log) = match routed {
            Some(r) => (r.decision, r.stats, r.log),
            None => self.pick(&down, conn, &req),
        };
        let mut record = match &self.access_log {
            Some(access_log) if log => Some(Box::new(log_record(&down, &req, access_log))),
            _ => None,
        };
        self.report_flow(&down, conn, &decision);
        let result = match decision {
            Ok(Decision::Forward(target)) => {
                if let Some(r) = record.as_deref_mut() {
                    r.upstream_name = Some(access_log::upstream_name(&target.backend));
                    r.route = target.ingress.clone().map(|i| (i, target.backend.clone()));
                }
                match target.request_timeout {
                    None => {
                        self.authorized_forward(&down, req, target, record.as_deref_mut())
                            .await
                    }
                    Some(limit) => {
                        let left = limit.saturating_sub(started.elapsed());
                        let forward =
                            self.authorized_forward(&down, req, target, record.as_deref_mut());
                        tokio::time::timeout(left, forward)
                            .await
                            .unwrap_or(Err(ProxyError::UpstreamTimeout))
                    }
                }
            }
            Ok(Decision::Redirect(status, location)) => Ok(redirect(status, location)),
            Ok(Decision::Preflight(headers)) => Ok(preflight(*headers)),
            Ok(Decision::Reply(response)) => Ok(*response),
            Err(e) => Err(e),
        };
        let response = result.unwrap_or_else(|e| {
            if e.source() == ErrorSource::Upstream {
                tracing::debug!(client = %down.client, "{e}");
            }
            self.metrics.error(e.source());
            error_response(&e)
        });
        stats.record(response.status());
        // ingress-nginx's request metrics, once the body has gone out.
        let done = body::Done {
            stats,
            status: response.status().as_u16(),
            method: crate::metrics::method_index(method_name.as_str().as_bytes()),
            request_length,
            started,
        };
        let mut response = response.map(|b| match b {
            Either::Left(streamed) => Either::Left(streamed.with_done(done)),
            Either::Right(full) => {
                done.observe(hyper::body::Body::size_hint(&full).exact().unwrap_or(0));
                Either::Right(full)
            }
        });
        if let Some(hsts) = self.hsts(down.tls) {
            response
                .headers_mut()
                .insert(http::header::STRICT_TRANSPORT_SECURITY, hsts);
        }
        Ok(match (record, &self.access_log) {
            (Some(mut r), Some(log)) => {
                r.status = response.status().as_u16();
                let log = log.clone();
                response.map(|body| match body {
                    // Logged when the body has been passed on (or dropped).
                    Either::Left(streamed) => {
                        Either::Left(streamed.with_log(body::PendingLog::new(r, log, started)))
                    }
                    Either::Right(full) => {
                        r.body_bytes_sent =
                            hyper::body::Body::size_hint(&full).exact().unwrap_or(0);
                        r.request_time = started.elapsed();
                        log.log(&r);
                        Either::Right(full)
                    }
                })
            }
            _ => response,
        })
    }

    /// `client-header-timeout`, `keep-alive`, `keep-alive-requests` and
    /// `large-client-header-buffers` of the live configuration, over the
    /// flags (`--client-header-timeout` for both timeouts), in one load.
    pub(crate) fn client_limits(&self) -> ClientLimits {
        let snap = self.snapshots.load();
        let k = &snap.table.client_keepalive;
        let header_timeout = k.header_timeout.unwrap_or(self.limits.header_read_timeout);
        ClientLimits {
            header_timeout,
            keep_alive: k.keep_alive.unwrap_or(header_timeout),
            requests: k.requests,
            max_head: k.header_bytes.unwrap_or(self.limits.max_header_bytes),
        }
    }

    /// The acceptor of the live TLS policy (`ssl-protocols`, ...); `None`:
    /// the defaults (the listener's own acceptor).
    pub(crate) fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        let policy = self.snapshots.load().table.tls_policy.clone()?;
        let mut cur = self.tls_policy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, a)) = &*cur
            && (Arc::ptr_eq(p, &policy) || **p == *policy)
        {
            return Some(a.clone());
        }
        match crate::tls::server_config_for(self.snapshots.clone(), Some(&policy), None) {
            Ok(config) => {
                let a = tokio_rustls::TlsAcceptor::from(config);
                *cur = Some((policy, a.clone()));
                Some(a)
            }
            Err(e) => {
                tracing::warn!(
                    "the ConfigMap's TLS policy cannot be applied ({e}); the defaults stay"
                );
                None
            }
        }
    }

    /// The HSTS header's value for a response on a connection (TLS only),
    /// as the live configuration says.
    fn hsts(&self, tls: bool) -> Option<HeaderValue> {
        if !tls {
            return None;
        }
        self.snapshots.load().table.hsts.clone()
    }

    /// The client-address rules in force: the live snapshot's (the flags
    /// under the ConfigMap's keys), the flags' before the first one.
    pub(crate) fn client_address(&self) -> Arc<headers::ClientAddress> {
        let snap = self.snapshots.load();
        match &snap.client_address {
            Some(rules) => rules.clone(),
            None => self.client_address_flags.clone(),
        }
    }

    /// The connection's downstream with the request's client: a trusted
    /// X-Forwarded-For's (`use-forwarded-headers`), else the connection's.
    fn request_downstream<'a>(
        rules: &headers::ClientAddress,
        down: Downstream,
        xff: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> Downstream {
        if !rules.reads_forwarded_for() {
            return down;
        }
        let ip = rules.client(down.origin.ip(), xff);
        Downstream {
            client: std::net::SocketAddr::new(ip, down.client.port()),
            ..down
        }
    }

    /// Pick route and peer on the live snapshot, and let go of it before
    /// anything is awaited. Returns the host's counters either way.
    fn pick(
        &self,
        down: &Downstream,
        conn: &ConnState,
        req: &Request<Incoming>,
    ) -> (Result<Decision, ProxyError>, Arc<RouteStats>, bool) {
        let raw_host = match request_host(req) {
            Ok(h) => h,
            Err(e) => return (Err(e), self.metrics.any_host().clone(), true),
        };
        let pq = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
        let cookie = |name: &str| {
            let fields = req.headers().get_all(http::header::COOKIE).iter();
            cookie_value(fields.map(HeaderValue::as_bytes), name)
        };
        let view = RequestView {
            method: req.method().as_str(),
            options: req.method() == http::Method::OPTIONS,
            header: &header,
            cookie: &cookie,
            log_off: std::cell::Cell::new(false),
        };
        let (decision, stats) = self.route(down, conn, raw_host, req.uri().path(), pq, &view);
        (decision, stats, !view.log_off.get())
    }

    /// Route and peer for a request to `raw_host` (as sent) and `path`;
    /// `target` (path and query) is for redirects.
    fn route(
        &self,
        down: &Downstream,
        conn: &ConnState,
        raw_host: Option<&str>,
        path: &str,
        target: &str,
        req: &RequestView<'_>,
    ) -> (Result<Decision, ProxyError>, Arc<RouteStats>) {
        let snap = self.snapshots.load();
        if snap.generation == 0 {
            return (Err(ProxyError::NotReady), self.metrics.any_host().clone());
        }
        let mut buf = [0u8; HOST_BUF_LEN];
        let host = raw_host.and_then(|h| normalize_host(h, &mut buf));
        // Routing, access rules and the pod all see the normalised path.
        let path = match normalize_path(path) {
            Ok(p) => p,
            Err(e) => {
                return (
                    Err(ProxyError::BadRequest(e.reason())),
                    self.metrics.any_host().clone(),
                );
            }
        };
        let normalized = match &path {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(p) => Some(match target.split_once('?') {
                Some((_, q)) => format!("{p}?{q}").into_boxed_str(),
                None => p.clone().into_boxed_str(),
            }),
        };
        let path: &str = &path;
        let matching = MatchView {
            view: req,
            query: target.split_once('?').map(|(_, q)| q),
            listener: snap.table.listener_bit(down.local.port(), down.tls),
        };
        let Some(route) = snap.table.route_request(host, path, &matching) else {
            req.log_off.set(snap.table.access_log_off);
            return (Err(ProxyError::NoRoute), self.metrics.any_host().clone());
        };
        req.log_off.set(
            route.rule.is_some_and(|r| r.settings.access_log_off)
                || snap.table.access_log_off
                || snap.table.skip_access_log_urls.iter().any(|u| **u == *path),
        );
        let stats = snap
            .stats
            .get(match route.rule {
                Some(r) => snap.table.labels().len() + r.stats as usize,
                None => route.label as usize,
            })
            .unwrap_or(self.metrics.any_host())
            .clone();
        // `satisfy: any`: the source lists or the authentication, either.
        let admitted = route.rule.is_none_or(|r| r.admits(down.client.ip()));
        let satisfy_any = route.rule.is_some_and(|r| {
            r.settings.satisfy_any
                && (r.settings.basic_auth.is_some() || r.settings.external_auth.is_some())
        });
        if !admitted && !satisfy_any {
            return (Err(ProxyError::Forbidden), stats);
        }
        // Whether authentication is still asked of this request.
        let authenticate = !(satisfy_any && admitted);
        // `block-cidrs`.
        if snap
            .table
            .block_cidrs
            .iter()
            .any(|c| c.contains(down.client.ip()))
        {
            return (Err(ProxyError::Forbidden), stats);
        }
        // `block-user-agents`.
        if let Some(agents) = &snap.table.block_user_agents
            && (req.header)("user-agent")
                .is_some_and(|ua| agents.set.is_match(&String::from_utf8_lossy(ua)))
        {
            return (Err(ProxyError::Forbidden), stats);
        }
        let in_flight = match route
            .rule
            .and_then(|r| snap.limiters.get(r.settings.limit? as usize))
        {
            None => None,
            Some(limiter) => match limiter.admit(down.client.ip(), Instant::now()) {
                Ok(guard) => guard,
                Err(why) => {
                    let status = match why {
                        crate::limit::Limited::Connections => snap.table.limit_conn_status,
                        _ => snap.table.limit_req_status,
                    };
                    let status =
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                    return (Err(ProxyError::Limited(why, status)), stats);
                }
            },
        };
        if !down.tls
            && let (Some(rule), Some(port), Some(host)) = (route.rule, self.https_port, host)
            && rule.redirect_https
        {
            return (
                https_location(host, port, target)
                    .map(|l| Decision::Redirect(StatusCode::PERMANENT_REDIRECT, l)),
                stats,
            );
        }
        if let Some(rule) = route.rule
            && let Some(decision) = rule_redirect(rule, down, raw_host, path, target)
        {
            return (decision, stats);
        }
        // Gateway API `RequestRedirect`.
        if let Some(rule) = route.rule
            && let Some(r) = rule
                .settings
                .filters
                .as_ref()
                .and_then(|f| f.redirect.as_ref())
        {
            let location = crate::model::gateway::Filters::location(
                r,
                if down.tls { "https" } else { "http" },
                raw_host.unwrap_or_default(),
                path,
                &rule.path,
                matching.query,
                // The Gateway listener's port (80 and 443 for the agent's own).
                match (
                    crate::model::gateway::is_gateway_port(matching.listener),
                    down.tls,
                ) {
                    (true, _) => down.local.port(),
                    (false, true) => 443,
                    (false, false) => 80,
                },
            );
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FOUND);
            return (
                HeaderValue::from_str(&location)
                    .map(|l| Decision::Redirect(status, l))
                    .map_err(|_| ProxyError::BadRequest("cannot build the redirect")),
                stats,
            );
        }
        // `server-snippet` and `configuration-snippet`: nginx's rewrite
        // phase, after the redirects and before authentication (a `return`
        // answers OPTIONS preflights as in nginx), but after the source lists.
        let snippet = route
            .rule
            .and_then(|r| r.settings.snippets.as_deref())
            .map(|s| {
                s.run(&crate::model::snippet::Input {
                    method: req.method,
                    host: host.unwrap_or(""),
                    path,
                    query: target.split_once('?').map(|(_, q)| q),
                    request_uri: target,
                    client: down.client.ip(),
                    tls: down.tls,
                    header: req.header,
                    cookie: req.cookie,
                })
            });
        if let Some(out) = &snippet
            && let Some((code, text)) = &out.reply
        {
            return (
                Ok(Decision::Reply(Box::new(snippet_reply(
                    *code,
                    text,
                    &out.response,
                )))),
                stats,
            );
        }
        // After the redirect: plain HTTP to a TLS host goes to HTTPS first.
        let client_cert = match route.rule.and_then(|r| r.settings.client_auth.as_deref()) {
            None => None,
            Some(required) => {
                let cn = route.rule.and_then(|r| r.settings.client_cn.as_deref());
                match client_cert_headers(down, conn, required, cn) {
                    Ok(headers) => Some(headers),
                    Err(why) => return (Err(ProxyError::ClientCert(why)), stats),
                }
            }
        };
        let filters = route.rule.and_then(|r| r.settings.filters.clone());
        let request_timeout = filters.as_ref().and_then(|f| f.request_timeout);
        let rewrite = filters.as_ref().and_then(|f| f.rewrite.as_ref());
        let rewritten = route.rule.and_then(|r| {
            let query = target.split_once('?').map(|(_, q)| q);
            // Gateway API `URLRewrite` of the path, the query kept.
            if let Some(change) = rewrite.and_then(|w| w.path.as_ref()) {
                let mut p = change.apply(path, &r.path);
                if let Some(q) = query {
                    p.push('?');
                    p.push_str(q);
                }
                return Some(p);
            }
            r.rewritten(path, query)
        });
        // A snippet's `rewrite` wins over `rewrite-target`.
        let rewritten = snippet
            .as_ref()
            .and_then(|o| o.target.clone())
            .or(rewritten);
        let cors = match route.rule.and_then(|r| r.settings.cors.as_deref()) {
            None => None,
            Some(c) => match cors_headers(c, (req.header)("origin"), req.options) {
                Some(h) if req.options => {
                    return (Ok(Decision::Preflight(Box::new(h))), stats);
                }
                // A response's headers; or an origin the route does not
                // cover: the pod answers as to anyone.
                other => other,
            },
        };
        // After the redirects and a CORS preflight, as nginx's access phase.
        if let Some(auth) = route
            .rule
            .and_then(|r| r.settings.basic_auth.as_deref())
            .filter(|_| authenticate)
            && auth.check((req.header)("authorization"), hash_off_loop)
                == crate::model::basic_auth::Check::Refused
        {
            return (
                Err(ProxyError::Unauthorized(Some(auth.challenge.clone()))),
                stats,
            );
        }
        // A canary Ingress takes the requests its header, cookie or weight
        // say; a Gateway API rule's weights pick among its backends.
        let backend = match (
            route.rule.and_then(|r| r.canary.as_deref()),
            route.rule.and_then(|r| r.settings.split.as_deref()),
        ) {
            (Some(c), _) if c.takes(req.header, req.cookie) => &c.backend,
            (_, Some(split)) => match split.pick() {
                Some(b) => b,
                None => {
                    return (
                        Err(ProxyError::Backend(crate::model::BackendError::Invalid)),
                        stats,
                    );
                }
            },
            _ => route.backend,
        };
        let ejected = |a| self.health.is_ejected(a);
        let picked = match route.rule.and_then(|r| r.settings.affinity.as_deref()) {
            None => match route.rule.and_then(|r| r.settings.hash_by.as_deref()) {
                // `upstream-hash-by`: the key's pod.
                Some(h) => {
                    let key = h.key(&crate::model::hashing::KeyInput {
                        request_uri: target,
                        client: down.client.ip(),
                        host: host.unwrap_or(""),
                        header: req.header,
                        cookie: req.cookie,
                    });
                    backend
                        .pick_hashed(key, h.subset, &ejected)
                        .map(|p| (p, None))
                }
                None if route.rule.is_some_and(|r| r.settings.ewma) => {
                    self.ewma.pick(backend, &ejected).map(|p| (p, None))
                }
                None => backend.pick_healthy(&ejected).map(|p| (p, None)),
            },
            Some(a) => backend
                .pick_sticky((req.cookie)(&a.name), &ejected)
                .map(|(p, token)| {
                    let set = token.and_then(|t| {
                        HeaderValue::from_str(&format!("{}={t}{}", a.name, a.attributes)).ok()
                    });
                    (p, set)
                }),
        };
        let (peer, set_cookie) = match picked {
            Ok(v) => v,
            Err(e) => return (Err(ProxyError::Backend(e)), stats),
        };
        let header =
            |v: &Option<Arc<str>>| v.as_deref().and_then(|v| HeaderValue::from_str(v).ok());
        let changes = Changes {
            client_cert,
            rewritten,
            host: route
                .rule
                .and_then(|r| header(&r.settings.upstream_vhost))
                .or_else(|| rewrite.and_then(|w| w.hostname.clone())),
            forwarded_prefix: route
                .rule
                .and_then(|r| header(&r.settings.forwarded_prefix)),
            cors,
            set_cookie,
            external_auth: route
                .rule
                .and_then(|r| r.settings.external_auth.clone())
                .filter(|_| authenticate),
            filters: filters.filter(|f| f.request_headers.is_some() || !f.mirrors.is_empty()),
            error_pages: route
                .rule
                .and_then(|r| Some((r.settings.error_pages.clone()?, r.ingress.clone()))),
            snippet: snippet
                .filter(|o| !o.request.is_empty() || !o.response.is_empty())
                .map(|o| (o.request, o.response)),
            request_buffer: route.rule.and_then(|r| r.settings.request_buffer),
            response_buffer: route.rule.and_then(|r| r.settings.response_buffer),
            otel: route.rule.and_then(|r| {
                Some((
                    r.settings.otel.clone()?,
                    snap.table.otel.clone()?,
                    r.path.clone(),
                ))
            }),
        };
        let body_limit = route
            .rule
            .map_or(Some(DEFAULT_BODY_LIMIT), |r| r.settings.body_limit);
        let read_timeout = route
            .rule
            .and_then(|r| r.settings.read_timeout)
            .unwrap_or(self.limits.upstream_response_timeout);
        let decision = Decision::Forward(Target {
            peer,
            backend: backend.clone(),
            body_limit,
            read_timeout,
            changes: (!changes.is_empty()).then(|| Box::new(changes)),
            in_flight,
            upstream_tls: route.rule.and_then(|r| r.settings.upstream_tls.clone()),
            connect_timeout: route.rule.and_then(|r| r.settings.connect_timeout),
            normalized,
            policy: route.rule.and_then(|r| r.settings.upstream_policy.clone()),
            request_timeout,
            ingress: route.rule.map(|r| r.ingress.clone()),
            ewma: route.rule.is_some_and(|r| r.settings.ewma),
            http10: route.rule.is_some_and(|r| r.settings.http10),
            edits: match route.rule {
                Some(r) => r.settings.edits.clone(),
                None => snap.table.edits.clone(),
            },
        });
        (Ok(decision), stats)
    }

    /// For a connection's first request, tells XDP the agent's verdict if
    /// XDP left the flow UNDECIDED (one map lookup per connection, only
    /// when XDP is on).
    fn report_flow(
        &self,
        down: &Downstream,
        conn: &ConnState,
        decision: &Result<Decision, ProxyError>,
    ) {
        let Some(flows) = &self.flows else { return };
        if conn
            .flow_reported
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let verdict = match decision {
            Err(ProxyError::Forbidden) => ingress_common::VERDICT_REJECT,
            _ => ingress_common::VERDICT_L7,
        };
        match flows.decide_undecided(down.peer, down.local, verdict, ingress_common::REASON_AGENT) {
            Ok(true) => {
                tracing::debug!(client = %down.client, verdict, "decided a flow XDP left undecided")
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("cannot record the flow verdict: {e}"),
        }
    }

    /// Filter the request, forward it to the target's peer, filter the
    /// response. A refused connection is retried on another endpoint when
    /// the request is idempotent and has no body (so nothing was consumed).
    /// Forwards, after asking the route's auth service if it has one.
    async fn authorized_forward(
        &self,
        down: &Downstream,
        mut req: Request<Incoming>,
        mut target: Target,
        record: Option<&mut access_log::Record>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let auth = target.changes.as_mut().and_then(|c| c.external_auth.take());
        if let Some(auth) = auth
            && let Some(answer) = self
                .external_auth(&auth, down, &mut req, target.read_timeout)
                .await?
        {
            return Ok(answer);
        }
        self.forward(down, req, target, record).await
    }

    async fn forward(
        &self,
        down: &Downstream,
        mut req: Request<Incoming>,
        mut target: Target,
        mut record: Option<&mut access_log::Record>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let protocol = target.backend.protocol;
        // `proxy-http-version: "1.0"` for plain and TLS HTTP/1 pods.
        let version = match upstream_version(protocol) {
            Version::HTTP_11 if target.http10 => Version::HTTP_10,
            v => v,
        };
        if let Some(limit) = target.body_limit
            && content_length(&req).is_some_and(|n| n > limit)
        {
            return Err(ProxyError::BodyTooLarge(limit));
        }
        let upgrade = upgrade_protocol(&req);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        // Same target, method and body; hop-by-hop headers out,
        // X-Forwarded-* in.
        // The request's host as `request_host` chose it when routing: the
        // target's authority, else Host (a clone, not a copy).
        let host_header = match req.uri().authority() {
            Some(a) => HeaderValue::from_str(a.as_str()).ok(),
            None => req.headers().get(HOST).cloned(),
        };
        let (mut parts, body) = req.into_parts();
        // `proxy-request-buffering: on`: the body read whole first.
        let request_buffer = target.changes.as_ref().and_then(|c| c.request_buffer);
        let (spool, body) = match request_buffer {
            Some(memory) if upgrade.is_none() && !hyper::body::Body::is_end_stream(&body) => {
                let spool = spool::Spool::read(
                    body,
                    target.body_limit,
                    memory as usize,
                    &std::env::temp_dir(),
                    self.snapshots
                        .load()
                        .table
                        .client_body_timeout
                        .unwrap_or(std::time::Duration::from_secs(60)),
                )
                .await
                .map_err(|e| match e {
                    spool::SpoolError::Body(body::RequestBodyError::TooLarge(n)) => {
                        ProxyError::BodyTooLarge(n)
                    }
                    spool::SpoolError::Timeout(t) => ProxyError::ClientBodyTimeout(t),
                    spool::SpoolError::Body(e) => ProxyError::ClientBody(e.to_string()),
                    e @ spool::SpoolError::File(..) => ProxyError::Upstream(e.to_string()),
                })?;
                parts.headers.remove(http::header::TRANSFER_ENCODING);
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, HeaderValue::from(spool.len()));
                (Some(spool), None)
            }
            _ => (None, Some(body)),
        };
        headers::to_pod(
            &mut parts.headers,
            down,
            host_header,
            &self.client_address(),
        );
        if let Some(r) = record.as_deref_mut()
            && r.request_id.is_none()
        {
            r.request_id = parts
                .headers
                .get(&headers::X_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(Into::into);
        }
        let changes = target.changes.take().map(|c| *c).unwrap_or_default();
        if let Some(host) = changes.host {
            parts.headers.insert(HOST, host);
        }
        if let Some(prefix) = changes.forwarded_prefix {
            parts.headers.insert(headers::X_FORWARDED_PREFIX, prefix);
        }
        if let Some(edit) = changes
            .filters
            .as_ref()
            .and_then(|f| f.request_headers.as_ref())
        {
            edit.apply(&mut parts.headers);
        }
        if let Some(edit) = target.edits.as_ref().and_then(|e| e.request.as_ref()) {
            edit.apply(&mut parts.headers);
        }
        if let Some((edit, _)) = &changes.snippet {
            edit.apply(&mut parts.headers, None);
        }
        if let Some(c) = changes.client_cert {
            // Only the proxy speaks for the client's certificate.
            for name in headers::SSL_CLIENT {
                parts.headers.remove(name);
            }
            parts.headers.insert(headers::SSL_CLIENT_VERIFY, c.verify);
            if let Some(cert) = c.cert {
                parts.headers.insert(headers::SSL_CLIENT_CERT, cert);
            }
            if let Some(subject) = c.subject {
                parts
                    .headers
                    .insert(headers::SSL_CLIENT_SUBJECT_DN, subject);
            }
        }
        if let Some(proto) = &upgrade {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, proto.clone());
        }
        let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
        let original_uri = match changes
            .rewritten
            .or(target.normalized.take().map(String::from))
        {
            Some(r) => r
                .parse::<Uri>()
                .map_err(|_| ProxyError::BadRequest("rewrite-target made an invalid target"))?,
            None => std::mem::take(&mut parts.uri),
        };
        // `enable-opentelemetry`: our span, and the pod's traceparent.
        let span = changes.otel.as_ref().map(|(route, export, rule_path)| {
            let host = parts
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            let svc = &target.backend.service;
            let ingress = target.ingress.as_deref();
            let span = otel::Span::start(
                route,
                export,
                &parts.headers,
                &otel::SpanInput {
                    method: parts.method.as_str(),
                    path: original_uri.path(),
                    scheme: if down.tls { "https" } else { "http" },
                    host,
                    client: down.client.ip(),
                    user_agent: parts
                        .headers
                        .get(http::header::USER_AGENT)
                        .and_then(|v| v.to_str().ok()),
                    rule_path,
                    namespace: &svc.namespace,
                    ingress: ingress.map_or("", |i| i.name.as_str()),
                    service: &svc.name,
                },
            );
            parts.headers.insert(otel::TRACEPARENT, span.traceparent());
            if !route.trust_incoming {
                parts.headers.remove(otel::TRACESTATE);
            }
            (span, export.clone())
        });
        parts.uri = upstream_uri(&target.peer, tls, &original_uri)?;
        parts.version = version;
        // What the error backend is told of the request, should the pod's
        // answer be one of `custom-http-errors`.
        let error_ask = changes.error_pages.as_ref().map(|_| ErrorAsk {
            // Path and query only (HTTP/2 requests carry the authority too).
            uri: original_uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone())),
            host: parts.headers.get(HOST).cloned(),
            accept: parts.headers.get(http::header::ACCEPT).cloned(),
            request_id: parts.headers.get(&headers::X_REQUEST_ID).cloned(),
        });
        // Requests with a body are not mirrored, spooled ones neither.
        if let Some(f) = changes.filters.as_ref().filter(|_| spool.is_none()) {
            self.mirror(
                &f.mirrors,
                &parts,
                &original_uri,
                body.as_ref(),
                target.read_timeout,
            );
        }
        // Retries (`proxy-next-upstream`): a bodiless request can be built
        // again for another endpoint; one with a body only while the body
        // is unread (the connection failed).
        // A spooled body can be sent again, like none.
        let bodiless =
            body.as_ref().is_none_or(hyper::body::Body::is_end_stream) && upgrade.is_none();
        let policy = target.policy();
        let first = match &target.peer {
            Peer::Addr(a) => Some(*a),
            Peer::Name(..) => None,
        };
        let mut attempts = first.map(|a| {
            retry::Attempts::new(
                &target.backend,
                policy,
                a,
                bodiless,
                parts.method.is_idempotent(),
            )
        });
        let may_retry =
            first.is_some() && upgrade.is_none() && target.backend.ready_endpoints() > 1;
        let resend = may_retry.then(|| (parts.method.clone(), parts.headers.clone()));
        // A body is kept reclaimable: a request whose connection failed
        // never read it, and takes it to the next endpoint.
        let spooled = || -> Result<RequestBody, ProxyError> {
            match &spool {
                Some(s) => s.body().map(RequestBody::Spooled).map_err(|e| {
                    ProxyError::Upstream(format!("cannot read the buffered request body: {e}"))
                }),
                None => Ok(RequestBody::Empty),
            }
        };
        let (body, mut reclaim) = match body.map(|b| RequestBody::new(b, target.body_limit)) {
            None => (spooled()?, None),
            Some(b) if may_retry && !bodiless => {
                let (b, r) = b.reclaimable();
                (b, Some(r))
            }
            Some(b) => (b, None),
        };

        let mut via = target.via();
        via.keepalive = self.snapshots.load().table.upstream_keepalive;
        let sent = Instant::now();
        let mut result = self
            .upstream
            .send(
                protocol,
                &via,
                Request::from_parts(parts, body),
                target.read_timeout,
            )
            .await;
        let mut peer = first;
        let mut try_started = sent;
        while let Some(at) = peer {
            if let Some(r) = record.as_deref_mut() {
                r.tried(&at, answered(&result), try_started.elapsed());
            }
            let (case, sent_to_pod, why) = match &result {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let (go_on, counts) = policy.on_status(status);
                    if counts {
                        self.health
                            .failed(at, policy, &format!("answered {status}"));
                    } else {
                        self.health.succeeded(at);
                    }
                    match UpstreamPolicy::status_case(status) {
                        Some(case) if go_on => (case, true, None),
                        _ => break,
                    }
                }
                Err(e @ ProxyError::UpstreamConnect(m)) => {
                    let case = if m.contains("timed out") {
                        NEXT_TIMEOUT
                    } else {
                        NEXT_ERROR
                    };
                    (case, false, Some(e.to_string()))
                }
                Err(e @ ProxyError::UpstreamTimeout) => (NEXT_TIMEOUT, true, Some(e.to_string())),
                Err(e @ ProxyError::Upstream(_)) => (NEXT_ERROR, true, Some(e.to_string())),
                Err(_) => break,
            };
            if let Some(why) = &why {
                self.health.failed(at, policy, why);
            }
            let (Some((method, headers)), Some(attempts)) = (&resend, attempts.as_mut()) else {
                break;
            };
            let Some(next) = attempts.next(case, sent_to_pod, &self.health) else {
                break;
            };
            let body = match &reclaim {
                None => spooled()?,
                // Unread: the pod never got it.
                Some(r) => match r.take_unsent() {
                    Some((body, again)) => {
                        reclaim = Some(again);
                        body
                    }
                    None => break,
                },
            };
            tracing::debug!(failed = %at, retry = %next, "trying another endpoint");
            self.metrics.upstream_retry();
            let mut req = Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = upstream_uri(&Peer::Addr(next), tls, &original_uri)?;
            *req.version_mut() = version;
            *req.headers_mut() = headers.clone();
            try_started = Instant::now();
            result = self
                .upstream
                .send(protocol, &via, req, target.read_timeout)
                .await;
            peer = Some(next);
        }
        if first.is_none()
            && let Some(r) = record
        {
            r.tried(&target.peer, answered(&result), sent.elapsed());
        }
        // The span ends with the response body, or here if none comes.
        let span = span.and_then(|(span, export)| {
            let upstream = peer.map(|p| p.to_string());
            let exporter = self.otel.get(&export);
            match &result {
                Ok(r) => Some(otel::PendingSpan::new(
                    span,
                    r.status().as_u16(),
                    upstream,
                    exporter,
                )),
                Err(e) => {
                    let (status, error) = (e.status().as_u16(), e.to_string());
                    if let Some(s) = span.end(Some(status), Some(&error), upstream.as_deref()) {
                        exporter.send(s);
                    }
                    None
                }
            }
        });
        let mut resp = result?;
        self.metrics.upstream_latency(sent.elapsed());
        if target.ewma
            && let Some(at) = peer
        {
            self.ewma.observe(at, try_started.elapsed());
        }
        if let (Some((pages, ingress)), Some(ask)) = (&changes.error_pages, &error_ask)
            && pages.codes.contains(&resp.status().as_u16())
        {
            let code = resp.status().as_u16();
            match self
                .error_page(
                    pages,
                    ingress,
                    &target.backend,
                    code,
                    ask,
                    target.read_timeout,
                )
                .await
            {
                Ok(page) => resp = page,
                Err(e) => {
                    tracing::debug!(code, backend = %pages.backend.service, "error backend failed, the pod's answer passes: {e}");
                }
            }
        }

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client) = client_upgrade
        {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(client, upstream, target.in_flight.take()));
            headers::ensure_server(resp.headers_mut());
            return Ok(resp.map(|b| Either::Left(ResponseBody::new(b, None, None).with_span(span))));
        }
        headers::strip_hop_by_hop(resp.headers_mut());
        headers::ensure_server(resp.headers_mut());
        if let Some(cookie) = &changes.set_cookie {
            resp.headers_mut()
                .append(http::header::SET_COOKIE, cookie.clone());
        }
        for edit in target.edits.iter().flat_map(|e| e.response()) {
            edit.apply(resp.headers_mut());
        }
        if let Some((_, edit)) = &changes.snippet {
            let status = resp.status().as_u16();
            edit.apply(resp.headers_mut(), Some(status));
        }
        if let Some(cors) = &changes.cors {
            // Ours replace the pod's (nginx's more_set_headers); Vary adds.
            for (name, value) in cors {
                if name == http::header::VARY {
                    resp.headers_mut().append(name, value.clone());
                } else {
                    resp.headers_mut().insert(name, value.clone());
                }
            }
        }
        let in_flight = target.in_flight.take();
        let read_timeout = Some(target.read_timeout);
        let response_buffer = changes.response_buffer;
        Ok(resp.map(|b| {
            let body = ResponseBody::new(b, in_flight, read_timeout).with_span(span);
            Either::Left(match response_buffer {
                Some(cap) => body.read_ahead(cap as usize),
                None => body,
            })
        }))
    }
}

/// What `custom-http-errors`' backend is told of the request.
struct ErrorAsk {
    uri: Uri,
    host: Option<HeaderValue>,
    accept: Option<HeaderValue>,
    request_id: Option<HeaderValue>,
}

impl Proxy {
    /// `custom-http-errors`: asks the error backend for the page of `code`
    /// with ingress-nginx's headers (X-Code, X-Format, X-Original-URI,
    /// X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port,
    /// X-Request-ID); its answer replaces the pod's.
    async fn error_page(
        &self,
        pages: &crate::model::ErrorPages,
        ingress: &crate::model::NamespacedName,
        backend: &Backend,
        code: u16,
        ask: &ErrorAsk,
        timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let ejected = |a| self.health.is_ejected(a);
        let peer = pages
            .backend
            .pick_healthy(&ejected)
            .map_err(ProxyError::Backend)?;
        if let Peer::Addr(a) = &peer {
            self.guard
                .check(*a)
                .map_err(|why| ProxyError::Upstream(why.reason().into()))?;
        }
        let protocol = pages.backend.protocol;
        let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
        let mut req = Request::new(RequestBody::Empty);
        *req.uri_mut() = upstream_uri(&peer, tls, &ask.uri)?;
        *req.version_mut() = upstream_version(protocol);
        let h = req.headers_mut();
        if let Some(host) = &ask.host {
            h.insert(HOST, host.clone());
        }
        let value = |s: &str| HeaderValue::from_str(s).ok();
        let fields = [
            ("x-code", value(&code.to_string())),
            (
                "x-format",
                ask.accept
                    .clone()
                    .or(Some(HeaderValue::from_static("text/html"))),
            ),
            ("x-original-uri", value(&ask.uri.to_string())),
            ("x-namespace", value(&ingress.namespace)),
            ("x-ingress-name", value(&ingress.name)),
            ("x-service-name", value(&backend.service.name)),
            ("x-service-port", value(&backend.port)),
            ("x-request-id", ask.request_id.clone()),
        ];
        for (name, v) in fields {
            if let Some(v) = v {
                h.insert(http::HeaderName::from_static(name), v);
            }
        }
        let via = upstream::Via {
            keepalive: self.snapshots.load().table.upstream_keepalive,
            ..upstream::Via::default()
        };
        self.upstream.send(protocol, &via, req, timeout).await
    }

    /// `RequestMirror`: a copy of the request, as its pod gets it, to a pod
    /// of each mirror backend whose share takes this request. Requests
    /// with a body are not copied (the body streams once, to the pod).
    fn mirror(
        &self,
        mirrors: &[crate::model::gateway::Mirror],
        parts: &http::request::Parts,
        original: &Uri,
        body: Option<&Incoming>,
        timeout: std::time::Duration,
    ) {
        if mirrors.is_empty() {
            return;
        }
        if !body.is_none_or(hyper::body::Body::is_end_stream) {
            tracing::debug!(uri = %original, "not mirrored: the request has a body");
            return;
        }
        for m in mirrors {
            if !m.takes() {
                continue;
            }
            let ejected = |a| self.health.is_ejected(a);
            let peer = match m.backend.pick_healthy(&ejected) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(backend = %m.backend.service, "not mirrored: {e:?}");
                    continue;
                }
            };
            let protocol = m.backend.protocol;
            let tls = matches!(protocol, BackendProtocol::Https | BackendProtocol::H2Tls);
            let Ok(uri) = upstream_uri(&peer, tls, original) else {
                continue;
            };
            let mut req = Request::new(RequestBody::Empty);
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = upstream_version(protocol);
            *req.headers_mut() = parts.headers.clone();
            self.metrics.upstream_mirrored();
            self.upstream.mirror(protocol, req, timeout);
        }
    }
}

/// The status of one upstream try, as nginx's `$upstream_status` says it
/// (the error's status when there was no response: 502, 504).
fn answered(result: &Result<Response<Incoming>, ProxyError>) -> u16 {
    match result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status().as_u16(),
    }
}

/// The access log's record of a request on hyper's path.
fn log_record(
    down: &Downstream,
    req: &Request<Incoming>,
    log: &access_log::AccessLog,
) -> access_log::Record {
    let version = match req.version() {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let header = |name: &str| req.headers().get(name).map(HeaderValue::as_bytes);
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut r = access_log::Record::request(
        down.client.ip(),
        req.method().as_str(),
        target,
        version,
        &header,
    );
    if let Some(t) = log.http_headers() {
        r.keep_headers(&t, &header);
    }
    if r.host.is_none() {
        r.host = req.uri().authority().map(|a| a.as_str().into());
    }
    r.request_length = request_length(req);
    r
}

/// The request as sent, near enough: request line and fields, and the
/// body it declares (`$request_length`, the request size metric).
fn request_length(req: &Request<Incoming>) -> u64 {
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let head: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + req.method().as_str().len()
        + target.len()
        + 12;
    head as u64 + content_length(req).unwrap_or(0)
}

/// The host a request is for (RFC 9112 §3.2, RFC 9113 §8.3.1): the
/// target's authority (HTTP/2's `:authority`, an absolute-form target)
/// wins over Host. 400: an HTTP/1.1 request without Host, more than one
/// Host, or an HTTP/2 `host` that disagrees with `:authority`.
fn request_host<B>(req: &Request<B>) -> Result<Option<&str>, ProxyError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host"));
    }
    let host = match host.map(HeaderValue::to_str) {
        Some(Err(_)) => return Err(ProxyError::BadRequest("Host is not text")),
        Some(Ok(h)) => Some(h),
        None => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    match (req.version(), authority, host) {
        (Version::HTTP_2, Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
            Err(ProxyError::BadRequest("host disagrees with :authority"))
        }
        (Version::HTTP_11, _, None) => Err(ProxyError::BadRequest("HTTP/1.1 request without Host")),
        (_, Some(a), _) => Ok(Some(a)),
        (_, None, h) => Ok(h),
    }
}

/// The HTTP version spoken to pods of this protocol.
fn upstream_version(protocol: BackendProtocol) -> Version {
    match protocol {
        BackendProtocol::Http | BackendProtocol::Https => Version::HTTP_11,
        BackendProtocol::H2c | BackendProtocol::H2Tls => Version::HTTP_2,
    }
}

/// The request's Content-Length, when it has a valid one.
fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The Upgrade protocol of an HTTP/1.1 upgrade request (WebSocket, ...).
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        req.headers().get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Copies bytes both ways between the upgraded client and pod connections
/// until either side closes, holding the request's `limit-connections`
/// slot meanwhile. Configuration changes never touch it.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _in_flight: Option<LimitGuard>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            return;
        }
    };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!("upgraded connection ended: {e}");
    }
}

/// `https://host[:port]/path?query` for a plain-HTTP request to a TLS host.
fn https_location(host: &str, port: u16, pq: &str) -> Result<HeaderValue, ProxyError> {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let location = if port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{port}{pq}")
    };
    HeaderValue::from_str(&location)
        .map_err(|_| ProxyError::BadRequest("cannot build the redirect"))
}

/// The redirect the rule's Ingress asks for (`permanent-redirect`,
/// `temporal-redirect`, `app-root` for `/`), if any.
fn rule_redirect(
    rule: &crate::model::PathRule,
    down: &Downstream,
    raw_host: Option<&str>,
    path: &str,
    target: &str,
) -> Option<Result<Decision, ProxyError>> {
    let location = |l: &str| {
        HeaderValue::from_str(l).map_err(|_| ProxyError::BadRequest("cannot build the redirect"))
    };
    if let Some(r) = &rule.settings.redirect {
        let status = StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
        if r.to_host {
            // `from-to-www-redirect`: the same request on the other name.
            let scheme = if down.tls { "https" } else { "http" };
            return Some(
                location(&format!("{scheme}://{}{target}", r.location))
                    .map(|l| Decision::Redirect(status, l)),
            );
        }
        return Some(location(&r.location).map(|l| Decision::Redirect(status, l)));
    }
    let root = rule.settings.app_root.as_deref().filter(|_| path == "/")?;
    // nginx's `$scheme://$http_host$app_root`: the Host as the client sent it.
    let scheme = if down.tls { "https" } else { "http" };
    let host = raw_host.unwrap_or_default();
    Some(
        location(&format!("{scheme}://{host}{root}"))
            .map(|l| Decision::Redirect(StatusCode::FOUND, l)),
    )
}

/// The body of a redirect the proxy answers itself.
fn redirect_body(status: StatusCode) -> &'static [u8] {
    match status {
        StatusCode::MOVED_PERMANENTLY => b"301 moved permanently\n",
        StatusCode::FOUND => b"302 found\n",
        StatusCode::SEE_OTHER => b"303 see other\n",
        StatusCode::TEMPORARY_REDIRECT => b"307 temporary redirect\n",
        StatusCode::PERMANENT_REDIRECT => b"308 permanent redirect\n",
        _ => b"redirect\n",
    }
}

/// A snippet's `return`: a 3xx with its URL as Location, else its text
/// as a text/plain body (nginx would send its default type, text/html: a
/// body echoing a request's variables must not become a page), with the
/// snippet's response edits.
fn snippet_reply(
    code: u16,
    text: &[u8],
    edit: &crate::model::snippet::Edit,
) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let location = matches!(code, 301 | 302 | 303 | 307 | 308)
        .then(|| HeaderValue::from_bytes(text).ok())
        .flatten();
    let mut resp = match location {
        Some(l) => redirect(status, l),
        None => {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::copy_from_slice(text))));
            *resp.status_mut() = status;
            if !text.is_empty() {
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            headers::ensure_server(resp.headers_mut());
            resp
        }
    };
    edit.apply(resp.headers_mut(), Some(code));
    resp
}

/// 204 to a CORS preflight, with its Access-Control headers.
fn preflight(access_control: http::HeaderMap) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    *resp.headers_mut() = access_control;
    headers::ensure_server(resp.headers_mut());
    resp
}

fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let body = Bytes::from_static(redirect_body(status));
    let mut resp = Response::new(Either::Right(Full::new(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(LOCATION, location);
    headers::ensure_server(resp.headers_mut());
    resp
}

/// `http(s)://peer/path?query`: the pooled client connects to `peer` and
/// sends the origin-form target unchanged.
fn upstream_uri(peer: &Peer, tls: bool, original: &Uri) -> Result<Uri, ProxyError> {
    let pq = original.path_and_query().map_or("/", |pq| pq.as_str());
    let mut buf = [0u8; AUTHORITY_BUF];
    let authority =
        write_authority(peer, &mut buf).ok_or(ProxyError::BadRequest("upstream name too long"))?;
    Uri::builder()
        .scheme(if tls { "https" } else { "http" })
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))
}

/// A DNS name (253) plus ":65535", or a socket address.
const AUTHORITY_BUF: usize = 264;

fn write_authority<'a>(peer: &Peer, buf: &'a mut [u8; AUTHORITY_BUF]) -> Option<&'a str> {
    use std::io::Write;
    let mut c = std::io::Cursor::new(&mut buf[..]);
    write!(c, "{peer}").ok()?;
    let n = c.position() as usize;
    std::str::from_utf8(&buf[..n]).ok()
}

/// Runs a slow password hash (bcrypt, SHA-crypt) without stalling the
/// other connections of this worker: on the multi-threaded runtime the
/// worker hands its queue to another thread for the duration.
fn hash_off_loop(verify: &dyn Fn() -> bool) -> bool {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(verify),
        _ => verify(),
    }
}

fn error_response(e: &ProxyError) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::from_static(
        e.body().as_bytes(),
    ))));
    *resp.status_mut() = e.status();
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let ProxyError::Unauthorized(Some(challenge)) = e {
        h.insert(http::header::WWW_AUTHENTICATE, challenge.clone());
    }
    headers::ensure_server(h);
    resp
}

#[cfg(test)]
mod tests {
    use crate::model::cookie_value;

    #[test]
    fn cookie_values_are_found_by_exact_name_across_fields() {
        let find = |fields: &[&str], name: &str| {
            cookie_value(fields.iter().map(|f| f.as_bytes()), name)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(find(&["a=1; route=x; b=2"], "route").as_deref(), Some("x"));
        assert_eq!(find(&["a=1;route=x"], "route").as_deref(), Some("x"));
        // HTTP/2 sends cookies as separate fields.
        assert_eq!(find(&["a=1", "route=y"], "route").as_deref(), Some("y"));
        // A longer name, a name without a value, an empty value.
        assert_eq!(find(&["route2=z; xroute=z"], "route"), None);
        assert_eq!(find(&["route"], "route"), None);
        assert_eq!(find(&["route="], "route").as_deref(), Some(""));
        // The first one wins, as in nginx's $cookie_NAME.
        assert_eq!(find(&["route=1; route=2"], "route").as_deref(), Some("1"));
    }
}
