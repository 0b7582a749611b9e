//! One request over h2c (HTTP/2 with prior knowledge), blocking: what
//! hyper's path of the agent serves, beside `http1`'s fast path.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::http1::Response;

/// `method` `path` to `host` over a new h2c connection to `addr`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut send, conn) = connect(addr).await;
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{host}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = send
            .send_request(req.body(Empty::<bytes::Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Response {
            status,
            headers,
            body,
        }
    })
}

type Conn = hyper::client::conn::http2::Connection<
    TokioIo<tokio::net::TcpStream>,
    Empty<bytes::Bytes>,
    TokioExecutor,
>;

async fn connect(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
    Conn,
) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap()
}

/// `n` GETs of `host`'s `/` one after another on one h2c connection (each
/// answered 200), then up to `wait` for the agent to end the connection:
/// how long that took (`None`: it stayed open).
pub fn gets_then_close(
    addr: SocketAddr,
    host: &str,
    n: usize,
    wait: std::time::Duration,
) -> Option<std::time::Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut send, conn) = connect(addr).await;
        let conn = tokio::spawn(conn);
        for _ in 0..n {
            let req = http::Request::get(format!("http://{host}/"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = send.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap();
        }
        let t = std::time::Instant::now();
        tokio::time::timeout(wait, conn)
            .await
            .ok()
            .map(|_| t.elapsed())
    })
}
