//! The L7 proxy: accept, route on the live snapshot, forward to a pod, stream back.
//!
//! Phases per request (pingora's naming): pick route → pick peer → filter
//! request → forward → filter response; an error's source decides its status.

mod error;
pub mod headers;
mod upstream;

use std::{convert::Infallible, sync::Arc, time::Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version, header::HOST};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;

pub use error::{ErrorSource, ProxyError};
pub use upstream::Upstream;

use crate::{
    cli::ProxyLimits,
    metrics::{HostStats, Metrics},
    model::{HOST_BUF_LEN, Peer, normalize_host},
    shutdown::Shutdown,
    snapshot::SnapshotCell,
};
use headers::Downstream;

/// Response body: streamed from upstream, or a small local page.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// Shared, read-only state of every connection.
pub struct Proxy {
    pub snapshots: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    pub limits: ProxyLimits,
}

impl Proxy {
    pub fn new(
        snapshots: Arc<SnapshotCell>,
        metrics: Arc<Metrics>,
        limits: ProxyLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            upstream: Upstream::new(&limits),
            snapshots,
            metrics,
            limits,
        })
    }

    /// Serves one request; never fails (errors become status pages).
    pub async fn handle(
        self: &Arc<Self>,
        down: Downstream,
        req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        let (peer, stats) = self.pick(&req);
        let result = match peer {
            Ok(peer) => self.forward(&down, req, peer).await,
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
        Ok(response)
    }

    /// Pick route and peer on the live snapshot, and let go of it before
    /// anything is awaited. Returns the host's counters either way.
    fn pick(&self, req: &Request<Incoming>) -> (Result<Peer, ProxyError>, Arc<HostStats>) {
        let snap = self.snapshots.load();
        if snap.generation == 0 {
            return (Err(ProxyError::NotReady), self.metrics.any_host().clone());
        }
        let raw_host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let mut buf = [0u8; HOST_BUF_LEN];
        let host = raw_host.and_then(|h| normalize_host(h, &mut buf));
        let Some(route) = snap.table.route(host, req.uri().path()) else {
            return (Err(ProxyError::NoRoute), self.metrics.any_host().clone());
        };
        let stats = snap
            .host_stats
            .get(route.label as usize)
            .unwrap_or(self.metrics.any_host())
            .clone();
        (route.backend.pick().map_err(ProxyError::Backend), stats)
    }

    /// Filter the request, forward it to `peer`, filter the response.
    async fn forward(
        &self,
        down: &Downstream,
        req: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        // Same target, method and body; hop-by-hop headers out,
        // X-Forwarded-* in; HTTP/1.1 to the pod.
        let (mut parts, body) = req.into_parts();
        let host_header = parts.headers.get(HOST).cloned();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::add_forwarded(&mut parts.headers, down, host_header.as_ref());
        if host_header.is_none()
            && let Some(a) = parts.uri.authority()
        {
            // HTTP/2 and absolute-form requests carry the host in the URI.
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(HOST, v);
            }
        }
        parts.uri = upstream_uri(&peer, &parts.uri)?;
        parts.version = Version::HTTP_11;

        let sent = Instant::now();
        let mut resp = self.upstream.send(Request::from_parts(parts, body)).await?;
        self.metrics.upstream_latency(sent.elapsed());
        headers::strip_hop_by_hop(resp.headers_mut());
        headers::ensure_server(resp.headers_mut());
        Ok(resp.map(Either::Left))
    }
}

/// `http://peer/path?query`: the pooled client connects to `peer` and sends
/// the origin-form target unchanged.
fn upstream_uri(peer: &Peer, original: &Uri) -> Result<Uri, ProxyError> {
    let pq = original.path_and_query().map_or("/", |pq| pq.as_str());
    let mut buf = [0u8; AUTHORITY_BUF];
    let authority =
        write_authority(peer, &mut buf).ok_or(ProxyError::BadRequest("upstream name too long"))?;
    Uri::builder()
        .scheme("http")
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
    headers::ensure_server(h);
    resp
}

/// Accepts connections on `listener` until `shutdown` fires, then lets
/// in-flight requests finish for up to the drain timeout.
pub async fn serve_http(proxy: Arc<Proxy>, listener: TcpListener, shutdown: Shutdown) {
    let local_port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(proxy.limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let down = Downstream {
            client,
            local_port,
            tls: false,
        };
        let handler = proxy.clone();
        let service = hyper::service::service_fn(move |req| {
            let proxy = handler.clone();
            async move { proxy.handle(down, req).await }
        });
        // HTTP/1.1, and HTTP/2 with prior knowledge (h2c) on the same port.
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(client = %client, "connection ended: {e}");
            }
        });
    }
    drop(listener);
    let drain = proxy.limits.drain_timeout;
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout ({drain:?}) passed with requests still in flight");
    }
}
