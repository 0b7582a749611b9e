//! Echo backends: stand-ins for pods. Each answers with its pod name and
//! what it received, so tests can see routing, headers and bodies.

use std::{convert::Infallible, io, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

/// What a backend answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 with `pod:`, `method:`, `uri:`, every header and the body.
    Echo,
    /// The seeds' default-http-backend: 404 "default backend - 404", 200 on /healthz.
    DefaultBackend,
}

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
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
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let name: Arc<str> = name.into();
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
                    () = serve(listener, name, mode) => {}
                    _ = stop_rx => {}
                }
            });
        })?;
    Ok(Backend {
        addr,
        stop: Some(stop_tx),
    })
}

/// Serves connections forever.
pub async fn serve(listener: tokio::net::TcpListener, name: Arc<str>, mode: Mode) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| respond(name.clone(), mode, req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn respond(
    name: Arc<str>,
    mode: Mode,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if mode == Mode::DefaultBackend {
        let (status, body) = if req.uri().path() == "/healthz" {
            (StatusCode::OK, "ok\n")
        } else {
            (StatusCode::NOT_FOUND, "default backend - 404\n")
        };
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut()
            .insert("x-pod", name.parse().expect("pod name is a header value"));
        return Ok(r);
    }
    let mut text = format!(
        "pod: {name}\nmethod: {}\nuri: {}\nversion: {:?}\n",
        req.method(),
        req.uri(),
        req.version()
    );
    for (k, v) in req.headers() {
        text.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
    }
    let (parts, body) = req.into_parts();
    let _ = parts;
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    text.push_str(&format!("body-bytes: {}\n\n", body.len()));
    let mut out = text.into_bytes();
    out.extend_from_slice(&body);
    let mut r = Response::new(Full::new(Bytes::from(out)));
    let h = r.headers_mut();
    h.insert("x-pod", name.parse().expect("pod name is a header value"));
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(r)
}
