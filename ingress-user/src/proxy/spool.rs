//! `proxy-request-buffering: "on"`: the request body is read whole before
//! a pod is chosen, as nginx's `proxy_request_buffering on`: a slow upload
//! ties up no pod connection, the pod gets a Content-Length, and a retry
//! can send the body again. Up to `client-body-buffer-size` is kept in
//! memory; past it the body goes to a temporary file (nginx's
//! `client_body_temp_path`), up to `proxy-body-size`, so memory per
//! buffered request stays bounded by the buffer size whatever the body.

use std::{
    io,
    path::PathBuf,
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

use super::body::RequestBodyError;

/// Bytes read from a spool file per frame.
const READ_CHUNK: usize = 16 * 1024;

/// A request body read whole.
#[derive(Debug)]
pub struct Spool {
    len: u64,
    store: Store,
}

#[derive(Debug)]
enum Store {
    Memory(Bytes),
    /// Removed when the spool is dropped.
    File(PathBuf),
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Store::File(path) = &self.store {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(transparent)]
    Body(#[from] RequestBodyError),
    #[error("the client sent no body byte for {0:?}")]
    Timeout(Duration),
    #[error("cannot write the request body to {0}: {1}")]
    File(PathBuf, #[source] io::Error),
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Spool {
    /// Reads `body` to its end: at most `limit` bytes (else `TooLarge`),
    /// `memory` of them in memory and the rest in a file in `dir`; each
    /// read must come within `idle` (nginx's `client_body_timeout`).
    pub async fn read(
        mut body: Incoming,
        limit: Option<u64>,
        memory: usize,
        dir: &std::path::Path,
        idle: Duration,
    ) -> Result<Spool, SpoolError> {
        let limit = limit.unwrap_or(u64::MAX);
        let mut len: u64 = 0;
        let mut mem = BytesMut::new();
        let mut file: Option<(std::fs::File, PathBuf)> = None;
        let mut guard = None;
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(SpoolError::Timeout(idle)),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(RequestBodyError::Client(e).into()),
                Ok(Some(Ok(f))) => f,
            };
            // Trailers are dropped, as nginx drops them when it buffers.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            len += data.len() as u64;
            if len > limit {
                return Err(RequestBodyError::TooLarge(limit).into());
            }
            if file.is_none() && mem.len() + data.len() <= memory {
                mem.extend_from_slice(&data);
                continue;
            }
            if file.is_none() {
                let path = dir.join(format!(
                    "xingress-body-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                ));
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| SpoolError::File(path.clone(), e))?;
                // Removed on every way out from here on.
                guard = Some(Spool {
                    len: 0,
                    store: Store::File(path.clone()),
                });
                file = Some((f, path));
            }
            if let Some((f, path)) = file.take() {
                // Written off the runtime, the frame moved in and dropped
                // there: nothing of it stays (a tokio File would keep a
                // buffer as large as the largest frame).
                let first = std::mem::take(&mut mem).freeze();
                let (f, written) = tokio::task::spawn_blocking(move || {
                    use std::io::Write;
                    let mut f = f;
                    let r = f.write_all(&first).and_then(|()| f.write_all(&data));
                    (f, r)
                })
                .await
                .map_err(|e| SpoolError::File(path.clone(), io::Error::other(e)))?;
                written.map_err(|e| SpoolError::File(path.clone(), e))?;
                file = Some((f, path));
            }
        }
        match (file, guard) {
            (Some(_), Some(mut spool)) => {
                spool.len = len;
                Ok(spool)
            }
            _ => Ok(Spool {
                len,
                store: Store::Memory(mem.freeze()),
            }),
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body went to a file.
    #[cfg(test)]
    pub fn in_file(&self) -> bool {
        matches!(self.store, Store::File(_))
    }

    /// The body, to send (again).
    pub fn body(&self) -> io::Result<SpoolBody> {
        Ok(match &self.store {
            Store::Memory(b) => SpoolBody::Memory(Some(b.clone())),
            Store::File(path) => {
                let f = std::fs::File::open(path)?;
                SpoolBody::File {
                    file: tokio::fs::File::from_std(f),
                    left: self.len,
                }
            }
        })
    }
}

/// A spooled body on its way to a pod.
pub enum SpoolBody {
    Memory(Option<Bytes>),
    File { file: tokio::fs::File, left: u64 },
}

impl Body for SpoolBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            SpoolBody::Memory(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            SpoolBody::File { file, left } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let mut buf = vec![0u8; READ_CHUNK.min(*left as usize)];
                let mut rb = ReadBuf::new(&mut buf);
                match Pin::new(file).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(RequestBodyError::Spool(e)))),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return Poll::Ready(Some(Err(RequestBodyError::Spool(
                                io::ErrorKind::UnexpectedEof.into(),
                            ))));
                        }
                        *left -= n as u64;
                        buf.truncate(n);
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            SpoolBody::Memory(b) => b.as_ref().is_none_or(Bytes::is_empty),
            SpoolBody::File { left, .. } => *left == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SpoolBody::Memory(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            SpoolBody::File { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body of `n` bytes in `chunk`-byte frames, through a real hyper
    /// connection (an `Incoming` cannot be made otherwise).
    async fn spooled(
        dir: &std::path::Path,
        n: usize,
        memory: usize,
        limit: Option<u64>,
    ) -> Result<(Spool, Vec<u8>), SpoolError> {
        std::fs::create_dir_all(dir).unwrap();
        let dir = dir.to_path_buf();
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let tx = tx.lock().unwrap().take();
                let dir = dir.clone();
                async move {
                    let r =
                        Spool::read(req.into_body(), limit, memory, &dir, Duration::from_secs(5))
                            .await;
                    if let Some(tx) = tx {
                        let _ = tx.send(r);
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Empty::<Bytes>::new(),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(server), svc)
                .await;
        });
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(client))
                .await
                .unwrap();
        tokio::spawn(conn);
        let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let req = hyper::Request::post("/")
            .header("host", "x")
            .body(http_body_util::Full::new(Bytes::from(body.clone())))
            .unwrap();
        let _ = send.send_request(req).await;
        let spool = rx.await.unwrap()?;
        Ok((spool, body))
    }

    async fn collect(spool: &Spool) -> Vec<u8> {
        spool
            .body()
            .unwrap()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn small_bodies_stay_in_memory_large_ones_go_to_a_file_removed_after() {
        let dir = test_dir("sizes");
        let (small, sent) = spooled(&dir, 4000, 8192, None).await.unwrap();
        assert!(!small.in_file());
        assert_eq!(small.len(), 4000);
        assert_eq!(collect(&small).await, sent);

        let (large, sent) = spooled(&dir, 300_000, 8192, Some(1 << 20)).await.unwrap();
        assert_eq!(files(&dir), 1);
        assert!(large.in_file());
        assert_eq!(large.len(), 300_000);
        // Sent twice (a retry): the same bytes each time.
        assert_eq!(collect(&large).await, sent);
        assert_eq!(collect(&large).await, sent);
        let Store::File(path) = &large.store else {
            unreachable!()
        };
        let path = path.clone();
        assert!(path.exists());
        drop(large);
        assert!(!path.exists(), "the file goes with the request");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_and_leaves_no_file() {
        let dir = test_dir("limit");
        match spooled(&dir, 100_000, 1024, Some(50_000)).await {
            Err(SpoolError::Body(RequestBodyError::TooLarge(50_000))) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(files(&dir), 0);
    }

    fn test_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xingress-spool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn files(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir).unwrap().flatten().count()
    }
}
