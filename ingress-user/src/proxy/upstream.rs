//! The upstream side: pooled keep-alive connections to pods, one pool per
//! backend protocol (HTTP/1.1, h2c, HTTPS, HTTP/2 over TLS).

use std::{collections::HashMap, sync::Arc};

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{RequestBody, RequestBodyError, body_error};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use rustls::{ClientConfig, pki_types::ServerName};

use super::{ProxyError, guard::UpstreamGuard};
use crate::{
    cli::ProxyLimits,
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

impl tower_service::Service<http::Uri> for Guarded {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
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
            Ok(io)
        })
    }
}

pub struct Upstream {
    /// The default client per protocol, in `PROTOCOLS` order.
    defaults: [AnyClient; 4],
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
        let defaults = PROTOCOLS.map(|p| {
            build_client(limits, connector.clone(), p, None)
                .expect("the default clients need no settings that can fail")
        });
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
        );
        let mut clients = self.custom.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let mut connector = self.connector.clone();
        if let Some(t) = via.connect_timeout {
            connector.inner.set_connect_timeout(Some(t));
        }
        let client = build_client(&self.limits, connector, protocol, via.verify.as_ref())?;
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
        let slot = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0);
        let target = req.uri().clone();
        let fut = match &self.defaults[slot] {
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
        let custom;
        let client = if via.verify.is_none() && via.connect_timeout.is_none() {
            let slot = PROTOCOLS.iter().position(|p| *p == protocol).unwrap_or(0);
            &self.defaults[slot]
        } else {
            custom = self.custom_client(protocol, via)?;
            &custom
        };
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
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// A pooled client for `protocol` over `connector`; for TLS, verifying
/// the pod as `verify` says (the settings and the name), else not at all.
fn build_client(
    limits: &ProxyLimits,
    connector: Guarded,
    protocol: BackendProtocol,
    verify: Option<&(&Arc<UpstreamTls>, String)>,
) -> Result<AnyClient, ProxyError> {
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .pool_idle_timeout(limits.upstream_idle_timeout)
        .timer(TokioTimer::new());
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
