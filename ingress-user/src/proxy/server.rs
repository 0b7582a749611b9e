//! Listeners: accept plain or TLS connections, serve HTTP/1.1 and HTTP/2 on
//! them, and drain on shutdown.

use std::{sync::Arc, time::Duration};

use futures::future::Either;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use rustls::ServerConfig;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};

use super::{
    ConnState, Proxy,
    abort::Abort,
    conn_watch::{ConnWatch, Watched},
    headers::Downstream,
};
use crate::{
    model::{HOST_BUF_LEN, normalize_host},
    shutdown::Shutdown,
};

/// Concurrent HTTP/2 streams per connection.
const MAX_H2_STREAMS: u32 = 256;
/// Streams a client may open and reset before the server accepts them
/// (rapid reset, CVE-2023-44487): past this the connection gets GOAWAY.
const MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset for protocol errors before it gives up on the connection.
const MAX_LOCAL_ERROR_RESETS: usize = 256;

/// Back-off after a failed accept (EMFILE and friends), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// hyper's server settings under the live configuration
/// (`client-header-timeout`, `large-client-header-buffers` over the flags).
fn builder(proxy: &Proxy) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let limits = proxy.client_limits();
    let max_header_bytes = limits.max_head;
    // A request head larger than the buffer gets 431 and the connection
    // closes. hyper's header timer also runs while a connection waits
    // idle, so it is set to the longer of the two: the connection's watch
    // closes idle connections at `keep-alive`, and `Checked` times heads
    // from their first byte.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout.max(limits.keep_alive))
        .max_buf_size(max_header_bytes.max(8192));
    // HTTP/2: the same header budget (CONTINUATION floods end there), a cap
    // on concurrent streams, and h2's rapid-reset guards set explicitly.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(MAX_H2_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// Serves one connection: HTTP/1.1 on the fast path, handed to hyper for
/// HTTP/2 (ALPN `h2`, or the h2c preface) and whatever the fast path leaves
/// to it. The watcher, held to the end, lets the drain wait for it.
///
/// Not an `async fn`: its arguments would stay in the task beside the
/// copies moved on, and every idle connection would pay for both.
fn serve_any<I>(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: I,
    down: Downstream,
    watcher: hyper_util::server::graceful::Watcher,
    shutdown: Shutdown,
    conn_state: ConnState,
) -> impl Future<Output = ()> + Send + 'static
where
    I: AsyncRead + AsyncWrite + Abort + Unpin + Send + 'static,
{
    let conn_state = Arc::new(conn_state);
    if conn_state.alpn_h2 {
        return Either::Left(Box::pin(serve_connection(
            proxy, builder, io, down, watcher, shutdown, conn_state, None,
        )));
    }
    let client = super::h1::Client::new(&proxy, io, &down);
    Either::Right(serve_h1(
        proxy, builder, client, down, watcher, shutdown, conn_state,
    ))
}

/// The fast path, then hyper for the rest if the fast path hands over.
async fn serve_h1<I>(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    mut client: super::h1::Client<I>,
    down: Downstream,
    watcher: hyper_util::server::graceful::Watcher,
    shutdown: Shutdown,
    conn_state: Arc<ConnState>,
) where
    I: AsyncRead + AsyncWrite + Abort + Unpin + Send + 'static,
{
    if let super::h1::Ended::HandOff(routed) =
        super::h1::serve(&proxy, &mut client, &down, &conn_state, &shutdown).await
    {
        // hyper reads the rest under the fast path's framing rules. Boxed:
        // the task of every HTTP/1.1 connection would otherwise be as
        // large as hyper's connection state, idle or not.
        let limits = proxy.client_limits();
        let rest =
            super::h1::Checked::new(client.into_rewind(), limits.max_head, limits.header_timeout);
        Box::pin(serve_connection(
            proxy, builder, rest, down, watcher, shutdown, conn_state, routed,
        ))
        .await;
    }
}

/// Serves one connection with hyper (HTTP/1.x, or HTTP/2 by preface),
/// until it ends; `keep-alive`, `keep-alive-requests` and the shutdown
/// stop it gracefully (no request in flight is cut). `routed`: the plan
/// the fast path made for the first request it hands over.
#[allow(clippy::too_many_arguments)]
async fn serve_connection<I>(
    proxy: Arc<Proxy>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    io: I,
    down: Downstream,
    watcher: hyper_util::server::graceful::Watcher,
    shutdown: Shutdown,
    conn_state: Arc<ConnState>,
    routed: Option<Box<super::Routed>>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The ConfigMap's client keys: a builder of their own (the listener's
    // carries the flags').
    let keys = proxy.snapshots.load().table.client_keepalive;
    let own;
    let builder = if keys.header_timeout.is_some()
        || keys.header_bytes.is_some()
        || keys.keep_alive.is_some()
    {
        own = self::builder(&proxy);
        &own
    } else {
        &*builder
    };
    let limits = proxy.client_limits();
    // `keep-alive: 0`: one request per connection, as nginx.
    let max_requests = if limits.keep_alive.is_zero() {
        Some(1)
    } else {
        limits.requests
    };
    let watch = ConnWatch::new();
    let requests = watch.clone();
    // Taken by the first request hyper reads, which is the one routed.
    let routed = routed.map(|r| Arc::new(std::sync::Mutex::new(Some(r))));
    let service = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        let conn_state = conn_state.clone();
        let in_flight = requests.begin();
        let routed = routed
            .as_ref()
            .and_then(|r| r.lock().unwrap_or_else(|e| e.into_inner()).take());
        async move {
            let resp = proxy.handle(down, &conn_state, req, routed).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|b| Watched::new(b, in_flight)))
        }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            ended = conn.as_mut() => break ended,
            () = shutdown.wait(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = watch.expired(limits.keep_alive, max_requests), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    // Held to here: the drain waits for this connection.
    drop(watcher);
    if let Err(e) = ended {
        tracing::debug!(client = %down.client, "connection ended: {e}");
    }
}

async fn accept(
    listener: &TcpListener,
    shutdown: &Shutdown,
) -> Option<(TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((stream, client));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            () = shutdown.wait() => return None,
        }
    }
}

async fn drain(proxy: &Proxy, graceful: GracefulShutdown) {
    let limit = proxy.limits.drain_timeout;
    if tokio::time::timeout(limit, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout ({limit:?}) passed with requests still in flight");
    }
}

/// The TLS handshake. When a host asks for client certificates
/// (`auth-tls-*`) the ClientHello is read first and its SNI picks the
/// config; the connection state records what was asked and what came.
async fn handshake(
    proxy: &Proxy,
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, ConnState)> {
    // The ConfigMap's TLS policy, if it sets one.
    let policy_acceptor = proxy.tls_acceptor();
    let acceptor = policy_acceptor.as_ref().unwrap_or(acceptor);
    if !proxy.snapshots.load().tls.asks_for_client_certs() {
        return Ok((acceptor.accept(stream).await?, ConnState::default()));
    }
    let start =
        tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream).await?;
    let mut buf = [0u8; HOST_BUF_LEN];
    let host_auth = {
        let hello = start.client_hello();
        let sni = hello
            .server_name()
            .and_then(|n| normalize_host(n, &mut buf));
        proxy.snapshots.load().tls.client_auth(sni).cloned()
    };
    let Some(host_auth) = host_auth else {
        let tls = start.into_stream(acceptor.config().clone()).await?;
        return Ok((tls, ConnState::default()));
    };
    let config = host_auth
        .config(&proxy.snapshots)
        .map_err(std::io::Error::other)?;
    let tls = start.into_stream(config).await?;
    let cert = host_auth.outcome(tls.get_ref().1);
    Ok((tls, ConnState::with_client_cert(cert)))
}

/// Plain HTTP (HTTP/1.1 and h2c) until `shutdown`, then drain.
pub async fn serve_http(proxy: Arc<Proxy>, listener: TcpListener, shutdown: Shutdown) {
    let fallback_local = listener
        .local_addr()
        .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let builder = Arc::new(builder(&proxy));
    let graceful = GracefulShutdown::new();
    while let Some((stream, client)) = accept(&listener, &shutdown).await {
        let local = stream.local_addr().unwrap_or(fallback_local);
        let down = Downstream {
            client,
            origin: client,
            peer: client,
            local,
            tls: false,
        };
        if proxy.client_address().proxy_protocol {
            let (proxy, builder, watcher, shutdown) = (
                proxy.clone(),
                builder.clone(),
                graceful.watcher(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                let mut stream = stream;
                let Some(down) = Box::pin(proxy.proxy_header(&mut stream, down)).await else {
                    return;
                };
                serve_any(
                    proxy,
                    builder,
                    stream,
                    down,
                    watcher,
                    shutdown,
                    ConnState::default(),
                )
                .await;
            });
            continue;
        }
        tokio::spawn(serve_any(
            proxy.clone(),
            builder.clone(),
            stream,
            down,
            graceful.watcher(),
            shutdown.clone(),
            ConnState::default(),
        ));
    }
    drop(listener);
    drain(&proxy, graceful).await;
}

/// TLS (certificate by SNI, ALPN h2 / http/1.1) until `shutdown`, then drain.
pub async fn serve_https(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: Shutdown,
) {
    let fallback_local = listener
        .local_addr()
        .unwrap_or(std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let builder = Arc::new(builder(&proxy));
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    let handshake_timeout = proxy.limits.header_read_timeout;
    while let Some((stream, client)) = accept(&listener, &shutdown).await {
        let local = stream.local_addr().unwrap_or(fallback_local);
        let down = Downstream {
            client,
            origin: client,
            peer: client,
            local,
            tls: true,
        };
        let (proxy, builder, acceptor, watcher, shutdown) = (
            proxy.clone(),
            builder.clone(),
            acceptor.clone(),
            graceful.watcher(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let mut stream = stream;
            let down = if proxy.client_address().proxy_protocol {
                match Box::pin(proxy.proxy_header(&mut stream, down)).await {
                    Some(down) => down,
                    None => return,
                }
            } else {
                down
            };
            let client = down.client;
            // Pass-through hosts are spliced to a pod before any handshake.
            // The pass-through and handshake states are boxed: they live
            // for a moment, while this task lives as long as the connection.
            // Only on the agent's HTTPS listener: Gateway ports terminate.
            let stream = if proxy.snapshots.load().table.has_passthrough()
                && proxy.https_port.is_none_or(|p| p == down.local.port())
            {
                match Box::pin(proxy.passthrough(stream, client, handshake_timeout)).await {
                    Some(stream) => stream,
                    None => return,
                }
            } else {
                stream
            };
            let handshake = handshake(&proxy, &acceptor, stream);
            // The TLS stream (rustls' connection state inline, over 1 KiB)
            // is boxed and moved out of the handshake's result before
            // serving: the task would otherwise hold it in several slots
            // (the result, then each async fn's copy of its argument) for
            // the connection's whole life.
            let (tls, mut conn_state) =
                match Box::pin(tokio::time::timeout(handshake_timeout, handshake)).await {
                    Ok(Ok((tls, conn_state))) => (Box::new(tls), conn_state),
                    Ok(Err(e)) => {
                        tracing::debug!(client = %client, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(client = %client, "TLS handshake timed out");
                        return;
                    }
                };
            conn_state.alpn_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            serve_any(proxy, builder, tls, down, watcher, shutdown, conn_state).await;
        });
    }
    drop(listener);
    drain(&proxy, graceful).await;
}

impl Proxy {
    /// Reads the PROXY protocol header of a new connection (within the
    /// header timeout): the downstream with the client it names, or `None`
    /// (the connection is dropped, and counted) when it is missing or
    /// malformed.
    async fn proxy_header(&self, stream: &mut TcpStream, down: Downstream) -> Option<Downstream> {
        let read = super::proxy_protocol::read(stream);
        match tokio::time::timeout(self.limits.header_read_timeout, read).await {
            Ok(Ok(super::proxy_protocol::Header::Proxied { source, .. })) => Some(Downstream {
                client: source,
                origin: source,
                ..down
            }),
            Ok(Ok(super::proxy_protocol::Header::Local)) => Some(down),
            Ok(Err(e)) => {
                self.metrics.proxy_protocol_error();
                tracing::debug!(peer = %down.peer, "connection closed: {e}");
                None
            }
            Err(_) => {
                self.metrics.proxy_protocol_error();
                tracing::debug!(peer = %down.peer, "connection closed: no PROXY protocol header in time");
                None
            }
        }
    }
}
