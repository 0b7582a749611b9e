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

use super::ProxyError;
use crate::{
    cli::ProxyLimits,
    model::{BackendProtocol, UpstreamTls},
    tls::{UnverifiedChain, provider},
};

type Plain = Client<HttpConnector, RequestBody>;
type Tls = Client<HttpsConnector<HttpConnector>, RequestBody>;

pub struct Upstream {
    http1: Plain,
    h2c: Plain,
    https: Tls,
    h2_tls: Tls,
    connector: HttpConnector,
    limits: ProxyLimits,
    /// Clients for `proxy-ssl-*` settings: (settings, name checked, h2).
    verified: std::sync::Mutex<HashMap<VerifiedKey, Tls>>,
}

type VerifiedKey = (Arc<UpstreamTls>, String, bool);

/// Distinct `proxy-ssl-*` clients kept; the set starts over past this.
const MAX_VERIFIED_CLIENTS: usize = 64;

/// How a request to an HTTPS pod is checked: the Ingress's settings and
/// the name the pod's certificate must carry.
pub struct Verify<'a> {
    pub tls: &'a Arc<UpstreamTls>,
    pub name: String,
}

impl Upstream {
    pub fn new(limits: &ProxyLimits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        connector.enforce_http(false);
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(limits.upstream_idle_timeout)
                .timer(TokioTimer::new());
            b
        };
        // hyper-rustls sets ALPN from the HTTP versions enabled below.
        let tls = || {
            ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports the default TLS versions")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(UnverifiedChain::new()))
                .with_no_client_auth()
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls())
            .https_only()
            .enable_http1()
            .wrap_connector(connector.clone());
        let h2_tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls())
            .https_only()
            .enable_http2()
            .wrap_connector(connector.clone());
        Self {
            http1: builder().build(connector.clone()),
            h2c: builder().http2_only(true).build(connector.clone()),
            https: builder().build(https),
            h2_tls: builder().http2_only(true).build(h2_tls),
            connector,
            limits: limits.clone(),
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The client for `verify`, built on first use.
    fn verified_client(&self, verify: &Verify<'_>, h2: bool) -> Result<Tls, ProxyError> {
        let key: VerifiedKey = (verify.tls.clone(), verify.name.clone(), h2);
        let mut clients = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let config = crate::tls::client_config(verify.tls)
            .map_err(|e| ProxyError::UpstreamConnect(format!("proxy-ssl settings: {e}")))?;
        let name = ServerName::try_from(verify.name.clone()).map_err(|_| {
            ProxyError::UpstreamConnect(format!("{:?} is not a server name", verify.name))
        })?;
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(name));
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_timer(TokioTimer::new())
            .pool_idle_timeout(self.limits.upstream_idle_timeout)
            .timer(TokioTimer::new());
        let client = if h2 {
            b.http2_only(true).build(
                builder
                    .enable_http2()
                    .wrap_connector(self.connector.clone()),
            )
        } else {
            b.build(
                builder
                    .enable_http1()
                    .wrap_connector(self.connector.clone()),
            )
        };
        if clients.len() >= MAX_VERIFIED_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends the request and waits for the response head (the body
    /// streams), at most `timeout` (504 after).
    pub async fn send(
        &self,
        protocol: BackendProtocol,
        verify: Option<&Verify<'_>>,
        req: Request<RequestBody>,
        timeout: std::time::Duration,
    ) -> Result<Response<Incoming>, ProxyError> {
        let fut = match (protocol, verify) {
            (BackendProtocol::Http, _) => self.http1.request(req),
            (BackendProtocol::H2c, _) => self.h2c.request(req),
            (BackendProtocol::Https, None) => self.https.request(req),
            (BackendProtocol::H2Tls, None) => self.h2_tls.request(req),
            (BackendProtocol::Https, Some(v)) => self.verified_client(v, false)?.request(req),
            (BackendProtocol::H2Tls, Some(v)) => self.verified_client(v, true)?.request(req),
        };
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
            Ok(Err(ref e)) if let Some(b) = body_error(e) => Err(match b {
                RequestBodyError::TooLarge(limit) => ProxyError::BodyTooLarge(*limit),
                RequestBodyError::Client(c) => ProxyError::ClientBody(c.to_string()),
            }),
            Ok(Err(e)) if e.is_connect() => Err(ProxyError::UpstreamConnect(error_chain(&e))),
            Ok(Err(e)) => Err(ProxyError::Upstream(error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
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
