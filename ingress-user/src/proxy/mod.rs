//! The L7 proxy: accept (plain or TLS), route on the live snapshot, forward
//! to a pod, stream back.
//!
//! A request goes through named phases: accept (`server`) → read head →
//! route, access and plan (`route`: host, path, canary, affinity; allow and
//! deny lists, limits, authentication; the request and response edits, the
//! target, retries, timeouts) → forward → respond (error pages) → log. The
//! plan (`plan`) is a value made by code that knows no transport; two
//! transports carry it out: the HTTP/1.1 fast path (`h1`, bytes) and
//! hyper's path (`forward` and `respond`, `HeaderMap`s), which also serves
//! HTTP/2 and whatever the fast path hands over. Both share one rule set for
//! forwarded headers (`headers`, `header_rules`), one retry policy (`retry`),
//! and one log record per request (`access_log`).

mod abort;
pub mod access_log;
mod body;
mod conn_watch;
mod error;
mod ewma;
mod external_auth;
mod forward;
pub mod guard;
mod h1;
mod health;
pub mod passthrough;
mod plan;
pub mod ports;
pub mod proxy_protocol;
mod respond;
mod retry;
mod route;
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
use forward::*;
use headers::Downstream;
use plan::*;
use respond::*;
use route::*;

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

/// A client connection's limits under the live configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientLimits {
    pub header_timeout: std::time::Duration,
    pub keep_alive: std::time::Duration,
    pub requests: Option<u32>,
    /// The largest request head.
    pub max_head: usize,
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
    async fn handle(
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
