//! Echo backends: stand-ins for pods. Each answers with its pod name and
//! what it received, so tests can see routing, headers and bodies.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, protocol::Role};

/// What a backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// HTTP/1.1: 200 with `pod:`, `method:`, `uri:`, every header and the
    /// body; WebSocket upgrades echo each message as "POD: MESSAGE".
    Echo,
    /// The seeds' default-http-backend: 404 "default backend - 404", 200 on /healthz.
    DefaultBackend,
    /// HTTP/2 with prior knowledge, gRPC-style: a response streamed in
    /// `STREAM_MESSAGES` length-prefixed messages, then `grpc-status` trailers.
    GrpcStream,
}

/// Messages in a `GrpcStream` response, sent `STREAM_GAP` apart.
pub const STREAM_MESSAGES: usize = 3;
pub const STREAM_GAP: Duration = Duration::from_millis(100);

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    /// "METHOD URI" of every request received, in order.
    pub seen: Arc<std::sync::Mutex<Vec<String>>>,
    /// Connections accepted so far.
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
}

impl Backend {
    /// Requests received so far ("METHOD URI").
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// Starts a backend on `addr` (port 0 for any) on its own thread, in the
/// calling thread's network namespace.
pub fn start(addr: SocketAddr, name: &str, mode: Mode) -> io::Result<Backend> {
    start_with(addr, name, mode, None)
}

/// Like `start`, over TLS with this server configuration.
pub fn start_with(
    addr: SocketAddr,
    name: &str,
    mode: Mode,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<Backend> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let name: Arc<str> = name.into();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted = connections.clone();
    std::thread::Builder::new()
        .name(format!("backend-{name}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                tokio::select! {
                    () = serve(listener, name, mode, tls, log, accepted) => {}
                    _ = stop_rx => {}
                }
            });
        })?;
    Ok(Backend {
        addr,
        seen,
        connections,
        stop: Some(stop_tx),
    })
}

/// Serves connections forever.
async fn serve(
    listener: tokio::net::TcpListener,
    name: Arc<str>,
    mode: Mode,
    tls: Option<Arc<rustls::ServerConfig>>,
    log: Log,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = name.clone();
        let acceptor = acceptor.clone();
        let log = log.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(a) => {
                    if let Ok(tls) = a.accept(stream).await {
                        serve_conn(tls, name, mode, log).await;
                    }
                }
                None => serve_conn(stream, name, mode, log).await,
            }
        });
    }
}

type Log = Arc<std::sync::Mutex<Vec<String>>>;

async fn serve_conn<I>(io: I, name: Arc<str>, mode: Mode, log: Log)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        log.lock()
            .unwrap()
            .push(format!("{} {}", req.method(), req.uri()));
        respond(name.clone(), mode, req)
    });
    let io = TokioIo::new(io);
    let _ = match mode {
        Mode::GrpcStream => {
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, svc)
                .await
        }
        _ => {
            hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await
        }
    };
}

type EchoBody = Either<Full<Bytes>, ChannelBody>;

async fn respond(
    name: Arc<str>,
    mode: Mode,
    req: Request<Incoming>,
) -> Result<Response<EchoBody>, Infallible> {
    let mut resp = match mode {
        Mode::DefaultBackend => default_backend(&req),
        Mode::GrpcStream => grpc_stream(&name, &req),
        Mode::Echo
            if req
                .headers()
                .get(http::header::UPGRADE)
                .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket")) =>
        {
            websocket(name.clone(), req)
        }
        Mode::Echo if req.uri().path().starts_with("/drip/") => drip(&req),
        Mode::Echo if req.uri().path().starts_with("/bytes/") => bytes(&req),
        Mode::Echo => echo(&name, req).await,
    };
    resp.headers_mut()
        .insert("x-pod", name.parse().expect("pod name is a header value"));
    Ok(resp)
}

fn full(body: impl Into<Bytes>) -> EchoBody {
    Either::Left(Full::new(body.into()))
}

fn default_backend(req: &Request<Incoming>) -> Response<EchoBody> {
    let (status, body) = if req.uri().path() == "/healthz" {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::NOT_FOUND, "default backend - 404\n")
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r
}

/// Echoes the request; a path starting `/delay/MS` answers after MS
/// milliseconds, one starting `/status/NNN` with status NNN.
async fn echo(name: &str, req: Request<Incoming>) -> Response<EchoBody> {
    if let Some(ms) = path_number(&req, "/delay/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path_number(&req, "/status/")
        .and_then(|n| StatusCode::from_u16(u16::try_from(n).ok()?).ok())
        .unwrap_or(StatusCode::OK);
    let mut text = format!(
        "pod: {name}\nmethod: {}\nuri: {}\nversion: {:?}\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let set_headers: Option<String> = req
        .headers()
        .get("x-echo-set-header")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n\n", body.len()));
    let mut out = text.into_bytes();
    out.extend_from_slice(&body);
    let mut r = Response::new(full(out));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    // The Gateway API suite's echo server: `X-Echo-Set-Header: Name:value,...`
    // become response headers.
    for (name, value) in set_headers
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(|kv| kv.split_once(':'))
    {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

/// N of a path `PREFIX N[/...]`.
fn path_number(req: &Request<Incoming>, prefix: &str) -> Option<u64> {
    let rest = req.uri().path().strip_prefix(prefix)?;
    rest.split('/').next()?.parse().ok()
}

/// `/bytes/N`: N bytes of 'x' (at most 64 MiB), with a Content-Length.
fn bytes(req: &Request<Incoming>) -> Response<EchoBody> {
    let n = path_number(req, "/bytes/").unwrap_or(0).min(64 << 20);
    Response::new(full(vec![b'x'; n as usize]))
}

/// `/drip/MS`: the head and a first line at once, the last line MS
/// milliseconds later, so the response stays in flight after its head.
fn drip(req: &Request<Incoming>) -> Response<EchoBody> {
    let ms = path_number(req, "/drip/").unwrap_or(1000);
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let _ = tx.send(Frame::data(Bytes::from_static(b"first\n"))).await;
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let _ = tx.send(Frame::data(Bytes::from_static(b"last\n"))).await;
    });
    Response::new(Either::Right(ChannelBody(rx)))
}

fn websocket(name: Arc<str>, mut req: Request<Incoming>) -> Response<EchoBody> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let mut r = Response::new(full("missing sec-websocket-key\n"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                tungstenite::Message::Text(t) => tungstenite::Message::text(format!("{name}: {t}")),
                tungstenite::Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        accept.parse().expect("base64 is a header value"),
    );
    r
}

fn grpc_stream(name: &str, req: &Request<Incoming>) -> Response<EchoBody> {
    let (tx, rx) = mpsc::channel(4);
    let name = name.to_string();
    tokio::spawn(async move {
        for i in 0..STREAM_MESSAGES {
            let msg = format!("message {i} from {name}");
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            frame.extend_from_slice(msg.as_bytes());
            if tx.send(Frame::data(Bytes::from(frame))).await.is_err() {
                return;
            }
            tokio::time::sleep(STREAM_GAP).await;
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        trailers.insert("grpc-message", HeaderValue::from_static("done"));
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let mut r = Response::new(Either::Right(ChannelBody(rx)));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let te = req
        .headers()
        .get(http::header::TE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("-"));
    h.insert("x-request-te", te);
    h.insert(
        "x-request-version",
        HeaderValue::from_str(&format!("{:?}", req.version())).expect("ascii"),
    );
    r
}

/// A response body fed from a channel, frame by frame (data and trailers).
pub struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl ChannelBody {
    pub fn new(rx: mpsc::Receiver<Frame<Bytes>>) -> Self {
        Self(rx)
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|f| f.map(Ok))
    }
}

/// A rustls server config for a TLS backend from PEM fixtures.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem).expect("key");
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("certificate and key");
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

/// Manifests for a Service `name` with one port named `http` (`port`) and
/// one EndpointSlice per pod: loopback pods differ in port, and a slice
/// carries one port for all its endpoints.
pub fn service_yaml(name: &str, port: u16, pods: &[&Backend]) -> String {
    service_yaml_at(name, port, &pods.iter().map(|p| p.addr).collect::<Vec<_>>())
}

/// `service_yaml` for endpoint addresses (which need not be listening).
pub fn service_yaml_at(name: &str, port: u16, pods: &[SocketAddr]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  ports: [{{name: http, port: {port}}}]\n---\n"
    );
    for (i, p) in pods.iter().enumerate() {
        out.push_str(&format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{i}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"], conditions: {{ready: true}}}}]\n---\n",
            p.port(),
            p.ip()
        ));
    }
    out
}
