//! The upstream side: pooled HTTP/1.1 keep-alive connections to pod IPs.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use super::ProxyError;
use crate::cli::ProxyLimits;

pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    response_timeout: std::time::Duration,
}

impl Upstream {
    pub fn new(limits: &ProxyLimits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(limits.upstream_connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .build(connector);
        Self {
            client,
            response_timeout: limits.upstream_response_timeout,
        }
    }

    /// Sends the request and waits for the response head (the body streams).
    pub async fn send(&self, req: Request<Incoming>) -> Result<Response<Incoming>, ProxyError> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(ProxyError::UpstreamTimeout),
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
