//! The upstream side: pooled keep-alive connections to pods, one pool per
//! backend protocol (HTTP/1.1, h2c, HTTPS, HTTP/2 over TLS).

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    task::{Context, Poll},
};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{RequestBody, RequestBodyError, body_error};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{
        Client,
        connect::{Connected, Connection, HttpConnector},
    },
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use rustls::{ClientConfig, pki_types::ServerName};

use super::{Keepalive, ProxyError, guard::UpstreamGuard};
use crate::{
    config::ProxyLimits,
    model::{BackendProtocol, UpstreamTls},
    tls::{UnverifiedChain, provider},
};

type Plain = Client<Guarded, RequestBody>;
type Tls = Client<HttpsConnector<Guarded>, RequestBody>;

/// hyper's connector, refusing what [`UpstreamGuard`] refuses once the
/// address is known (after DNS), before a byte is sent.
#[derive(Clone)]
pub struct Guarded {
    inner: HttpConnector,
    guard: Arc<UpstreamGuard>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A pod connection of hyper's pools, counting the requests it carried
/// (`upstream-keepalive-requests`): the count rides on every response as
/// a connection extra.
pub struct PodStream {
    tcp: tokio::net::TcpStream,
    carried: Carried,
}

/// Requests a pooled pod connection has carried.
#[derive(Clone)]
struct Carried(Arc<AtomicU32>);

impl Connection for PodStream {
    fn connected(&self) -> Connected {
        self.tcp.connected().extra(self.carried.clone())
    }
}

impl AsyncRead for PodStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for PodStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl tower_service::Service<http::Uri> for Guarded {
    type Response = TokioIo<PodStream>;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let guard = self.guard.clone();
        Box::pin(async move {
            let io = connecting.await?;
            let peer = io.inner().peer_addr()?;
            if let Err(why) = guard.check(peer) {
                return Err(format!("{peer} refused: {}", why.reason()).into());
            }
            Ok(TokioIo::new(PodStream {
                tcp: io.into_inner(),
                carried: Carried(Arc::new(AtomicU32::new(0))),
            }))
        })
    }
}

pub struct Upstream {
    /// The default client per protocol, in `PROTOCOLS` order, for the
    /// `upstream-keepalive-*` they were built with (rebuilt when those
    /// change).
    defaults: ArcSwap<(Keepalive, [AnyClient; 4])>,
    connector: Guarded,
    limits: ProxyLimits,
    /// Clients for routes with their own settings (`proxy-ssl-*`,
    /// `proxy-connect-timeout`), built on first use.
    custom: std::sync::Mutex<HashMap<CustomKey, AnyClient>>,
}

type CustomKey = (
    BackendProtocol,
    Option<(Arc<UpstreamTls>, String)>,
    Option<std::time::Duration>,
    Keepalive,
);

#[derive(Clone)]
enum AnyClient {
    Plain(Plain),
    Tls(Tls),
}

/// Distinct custom clients kept; the set starts over past this.
const MAX_CUSTOM_CLIENTS: usize = 64;

/// How a route reaches its pods when it differs from the defaults.
#[derive(Default)]
pub struct Via<'a> {
    /// `proxy-ssl-*`: the Ingress's settings and the name the pod's
    /// certificate must carry.
    pub verify: Option<(&'a Arc<UpstreamTls>, String)>,
    /// `proxy-connect-timeout`.
    pub connect_timeout: Option<std::time::Duration>,
    /// The ConfigMap's `upstream-keepalive-*`.
    pub keepalive: Keepalive,
}

const PROTOCOLS: [BackendProtocol; 4] = [
    BackendProtocol::Http,
    BackendProtocol::H2c,
    BackendProtocol::Https,
    BackendProtocol::H2Tls,
];

impl Upstream {
    pub fn new(limits: &ProxyLimits, guard: Arc<UpstreamGuard>) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_nodelay(true);
        inner.set_connect_timeout(Some(limits.upstream_connect_timeout));
        inner.enforce_http(false);
        let connector = Guarded { inner, guard };
        let keep = Keepalive::default();
        let defaults = ArcSwap::from_pointee((keep, default_clients(limits, &connector, keep)));
        Self {
            defaults,
            connector,
            limits: limits.clone(),
            custom: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The client for a route's own settings, built on first use.
    fn custom_client(
        &self,
        protocol: BackendProtocol,
        via: &Via<'_>,
    ) -> Result<AnyClient, ProxyError> {
        let key: CustomKey = (
            protocol,
            via.verify.as_ref().map(|(t, n)| ((*t).clone(), n.clone())),
            via.connect_timeout,
            via.keepalive,
        );
        let mut clients = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut connector = self.connector.clone();
        if let Some(t) = via.connect_timeout {
            connector.inner.set_connect_timeout(Some(t));
        }
        let client = build_client(
            &self.limits,
            connector,
            protocol,
            via.verify.as_ref(),
            via.keepalive,
        )?;
        if clients.len() >= MAX_CUSTOM_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends the request and waits for the response head (the body
    /// streams), at most `timeout` (504 after).
    /// Sends a copy of a request (`RequestMirror`) on its own task: the
    /// answer is read and dropped, a failure only logged; the client's
    /// request never waits for it.
    pub fn mirror(
        &self,
        protocol: BackendProtocol,
        req: Request<RequestBody>,
        timeout: std::time::Duration,
    ) {
        let target = req.uri().clone();
        let fut = match self.default_client(protocol, Keepalive::default()) {
            AnyClient::Plain(c) => c.request(req),
            AnyClient::Tls(c) => c.request(req),
        };
        tokio::spawn(async move {
            let answered = tokio::time::timeout(timeout, async move {
                let resp = fut.await?;
                http_body_util::BodyExt::collect(resp.into_body()).await?;
                Ok::<_, BoxError>(())
            })
            .await;
            match answered {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%target, "mirrored request failed: {e}"),
                Err(_) => tracing::debug!(%target, "mirrored request timed out"),
            }
        });
    }

    pub async fn send(
        &self,
        protocol: BackendProtocol,
        via: &Via<'_>,
        req: Request<RequestBody>,
        timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let client = if via.verify.is_none() && via.connect_timeout.is_none() {
            self.default_client(protocol, via.keepalive)
        } else {
            self.custom_client(protocol, via)?
        };
        let mut req = req;
        let captured = via
            .keepalive
            .requests
            .map(|_| hyper_util::client::legacy::connect::capture_connection(&mut req));
        let fut = match client {
            AnyClient::Plain(c) => c.request(req),
            AnyClient::Tls(c) => c.request(req),
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(ref e)) if let Some(b) = body_error(e) => Err(match b {
                RequestBodyError::TooLarge(limit) => ProxyError::BodyTooLarge(*limit),
                RequestBodyError::Client(c) => ProxyError::ClientBody(c.to_string()),
                RequestBodyError::Spool(e) => {
                    ProxyError::Upstream(format!("the buffered body: {e}"))
                }
            }),
            Ok(Err(e)) if e.is_connect() => Err(ProxyError::UpstreamConnect(error_chain(&e))),
            Ok(Err(e)) => Err(ProxyError::Upstream(error_chain(&e))),
            Ok(Ok(resp)) => {
                // `upstream-keepalive-requests`: the connection's last
                // request goes back to no pool.
                if let (Some(max), Some(captured)) = (via.keepalive.requests, &captured)
                    && let Some(Carried(n)) = resp.extensions().get::<Carried>()
                    && n.fetch_add(1, Ordering::Relaxed) + 1 >= max
                    && let Some(conn) = captured.connection_metadata().as_ref()
                {
                    conn.poison();
                }
                Ok(resp)
            }
        }
    }

    /// The default client for `protocol` under `keep`.
    fn default_client(&self, protocol: BackendProtocol, keep: Keepalive) -> AnyClient {
        let slot = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0);
        let defaults = self.defaults.load();
        if defaults.0 == keep {
            return defaults.1[slot].clone();
        }
        // The ConfigMap changed them: new pools (the old ones close as
        // their connections go idle).
        let clients = default_clients(&self.limits, &self.connector, keep);
        let client = clients[slot].clone();
        self.defaults.store(Arc::new((keep, clients)));
        client
    }
}

/// The default clients, one per protocol in `PROTOCOLS` order.
fn default_clients(limits: &ProxyLimits, connector: &Guarded, keep: Keepalive) -> [AnyClient; 4] {
    PROTOCOLS.map(|p| {
        build_client(limits, connector.clone(), p, None, keep)
            .expect("the default clients need no settings that can fail")
    })
}

/// A pooled client for `protocol` over `connector`; for TLS, verifying
/// the pod as `verify` says (the settings and the name), else not at all.
fn build_client(
    limits: &ProxyLimits,
    connector: Guarded,
    protocol: BackendProtocol,
    verify: Option<&(&Arc<UpstreamTls>, String)>,
    keep: Keepalive,
) -> Result<AnyClient, ProxyError> {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(keep.timeout.unwrap_or(limits.upstream_idle_timeout))
        .timer(TokioTimer::new());
    if let Some(n) = keep.connections {
        b.pool_max_idle_per_host(n);
    }
    let h2 = matches!(protocol, BackendProtocol::H2c | BackendProtocol::H2Tls);
    if h2 {
        b.http2_only(true);
    }
    if matches!(protocol, BackendProtocol::Http | BackendProtocol::H2c) {
        return Ok(AnyClient::Plain(b.build(connector)));
    }
    let config = match verify {
        Some((tls, _)) => crate::tls::client_config(tls)
            .map_err(|e| ProxyError::UpstreamConnect(format!("proxy-ssl settings: {e}")))?,
        None => unverified_tls(),
    };
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let builder = match verify {
        Some((_, name)) => {
            let name = ServerName::try_from(name.clone()).map_err(|_| {
                ProxyError::UpstreamConnect(format!("{name:?} is not a server name"))
            })?;
            builder.with_server_name_resolver(FixedServerNameResolver::new(name))
        }
        None => builder,
    };
    // hyper-rustls sets ALPN from the HTTP version enabled here.
    Ok(AnyClient::Tls(if h2 {
        b.build(builder.enable_http2().wrap_connector(connector))
    } else {
        b.build(builder.enable_http1().wrap_connector(connector))
    }))
}

/// TLS to pods without verifying them, as ingress-nginx by default.
fn unverified_tls() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnverifiedChain::new()))
        .with_no_client_auth()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
