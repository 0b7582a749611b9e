//! The request body on its way upstream: the client's stream with the
//! route's size limit applied as it flows (no buffering), or nothing (a
//! bodiless request being retried on another endpoint).

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::limit::LimitGuard;

/// Why the body could not be forwarded: the client's fault either way.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body: {0}")]
    Client(#[source] hyper::Error),
    #[error("reading the buffered request body: {0}")]
    Spool(#[source] std::io::Error),
}

pub enum RequestBody {
    Stream {
        inner: Incoming,
        /// Bytes still allowed; `u64::MAX`: no limit.
        remaining: u64,
        limit: u64,
    },
    Empty,
    /// A body the proxy can take back if the request never reached a pod
    /// (the connection failed): it then goes to another endpoint.
    Reclaimable(Arc<Mutex<Held>>),
    /// Read whole before the pod was chosen (`proxy-request-buffering`).
    Spooled(super::spool::SpoolBody),
}

/// A reclaimable body, and whether anything was read from it yet.
pub struct Held {
    body: Option<RequestBody>,
    polled: bool,
}

/// The proxy's handle on a reclaimable body.
pub struct Reclaim(Arc<Mutex<Held>>);

impl Reclaim {
    /// The body, if no byte of it was read (so the request never reached
    /// a pod); a new reclaimable body around it, and its handle.
    pub fn take_unsent(&self) -> Option<(RequestBody, Reclaim)> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.polled {
            return None;
        }
        held.body.take().map(RequestBody::reclaimable)
    }
}

impl RequestBody {
    /// This body behind a handle that can take it back while unread.
    pub fn reclaimable(self) -> (Self, Reclaim) {
        let held = Arc::new(Mutex::new(Held {
            body: Some(self),
            polled: false,
        }));
        (RequestBody::Reclaimable(held.clone()), Reclaim(held))
    }

    pub fn new(inner: Incoming, limit: Option<u64>) -> Self {
        let limit = limit.unwrap_or(u64::MAX);
        RequestBody::Stream {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let (inner, remaining, limit) = match self.get_mut() {
            RequestBody::Stream {
                inner,
                remaining,
                limit,
            } => (inner, remaining, limit),
            RequestBody::Empty => return Poll::Ready(None),
            RequestBody::Spooled(b) => return Pin::new(b).poll_frame(cx),
            RequestBody::Reclaimable(held) => {
                let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
                held.polled = true;
                return match held.body.as_mut() {
                    Some(body) => Pin::new(body).poll_frame(cx),
                    None => Poll::Ready(None),
                };
            }
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *remaining {
                        return Poll::Ready(Some(Err(RequestBodyError::TooLarge(*limit))));
                    }
                    *remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(RequestBodyError::Client(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Stream { inner, .. } => inner.is_end_stream(),
            RequestBody::Empty => true,
            RequestBody::Spooled(b) => b.is_end_stream(),
            RequestBody::Reclaimable(held) => held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .body
                .as_ref()
                .is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Stream { inner, .. } => inner.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Spooled(b) => b.size_hint(),
            RequestBody::Reclaimable(held) => held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .body
                .as_ref()
                .map_or(SizeHint::with_exact(0), Body::size_hint),
        }
    }
}

/// The body error behind an upstream failure, if it was the body's.
pub fn body_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a RequestBodyError> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<RequestBodyError>() {
            return Some(b);
        }
        cur = err.source();
    }
    None
}

/// The pod's response on its way to the client, holding the request's
/// `limit-connections` slot until the body has been passed on (or dropped).
/// A pod that sends nothing for the read timeout (`proxy-read-timeout`)
/// has its response cut, as on the HTTP/1.1 fast path.
/// An access log line waiting for the end of the response body.
pub struct PendingLog {
    record: Box<super::access_log::Record>,
    log: std::sync::Arc<super::access_log::AccessLog>,
    started: std::time::Instant,
}

impl PendingLog {
    pub fn new(
        record: Box<super::access_log::Record>,
        log: std::sync::Arc<super::access_log::AccessLog>,
        started: std::time::Instant,
    ) -> Box<Self> {
        Box::new(Self {
            record,
            log,
            started,
        })
    }
}

/// A request's metrics, observed when its response's body has gone out.
pub struct Done {
    pub stats: std::sync::Arc<crate::metrics::RouteStats>,
    pub status: u16,
    pub method: u8,
    pub request_length: u64,
    pub started: std::time::Instant,
}

impl Done {
    pub fn observe(&self, response_length: u64) {
        self.stats.observe(
            self.status,
            self.method,
            self.request_length,
            response_length,
            self.started.elapsed(),
        );
    }
}

pub struct ResponseBody {
    inner: Inner,
    _in_flight: Option<LimitGuard>,
    /// Written when the body has been passed on, or dropped.
    log: Option<Box<PendingLog>>,
    /// Observed then too, with the bytes passed on (inline: no allocation
    /// per response).
    done: Option<Done>,
    /// `enable-opentelemetry`: the request's span, ended with the body.
    span: Option<Box<super::otel::PendingSpan>>,
    sent: u64,
    read_timeout: Option<Duration>,
    /// The read timer, made on the first wait and reset on later ones.
    idle: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The timer runs for the current wait.
    armed: bool,
}

/// Where a response's bytes come from.
enum Inner {
    Pod(Incoming),
    /// `proxy-buffering: on`: a task reads ahead of the client (boxed:
    /// responses without it stay small).
    ReadAhead(Box<ReadAhead>),
}

impl Inner {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Inner::Pod(b) => Pin::new(b)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(Into::into))),
            Inner::ReadAhead(r) => r.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Inner::Pod(b) => b.is_end_stream(),
            Inner::ReadAhead(r) => r.done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Inner::Pod(b) => b.size_hint(),
            Inner::ReadAhead(r) => r.hint,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `proxy-buffering: on` (nginx's `proxy_buffering` with
/// `proxy_max_temp_file_size 0`): a task reads the pod's response ahead of
/// the client, holding up to `room` bytes, so a slow client ties up the
/// pod only for what does not fit; past that the client's pace applies.
pub struct ReadAhead {
    rx: tokio::sync::mpsc::UnboundedReceiver<Result<Frame<Bytes>, BoxError>>,
    room: Arc<tokio::sync::Semaphore>,
    cap: usize,
    hint: SizeHint,
    done: bool,
}

impl ReadAhead {
    /// Starts reading `body` ahead, at most `cap` bytes held; the pod must
    /// send something within `read_timeout` each time.
    pub fn spawn(mut body: Incoming, cap: usize, read_timeout: Duration) -> Self {
        let cap = cap.clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
        let room = Arc::new(tokio::sync::Semaphore::new(cap));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hint = body.size_hint();
        let task_room = room.clone();
        tokio::spawn(async move {
            use http_body_util::BodyExt;
            loop {
                let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
                    Err(_) => {
                        let _ = tx.send(Err(ReadTimeout(read_timeout).into()));
                        return;
                    }
                    Ok(None) => return,
                    Ok(Some(Err(e))) => {
                        let _ = tx.send(Err(e.into()));
                        return;
                    }
                    Ok(Some(Ok(f))) => f,
                };
                let n = f_len(&frame, cap);
                // Room for it, or the client went away (closed).
                match task_room.acquire_many(n as u32).await {
                    Ok(p) => p.forget(),
                    Err(_) => return,
                }
                if tx.send(Ok(frame)).is_err() {
                    return;
                }
            }
        });
        Self {
            rx,
            room,
            cap,
            hint,
            done: false,
        }
    }

    /// A body that has ended (a placeholder while one is swapped in).
    fn empty() -> Self {
        let (_, rx) = tokio::sync::mpsc::unbounded_channel();
        Self {
            rx,
            room: Arc::new(tokio::sync::Semaphore::new(0)),
            cap: 0,
            hint: SizeHint::with_exact(0),
            done: true,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.room.add_permits(f_len(&frame, self.cap));
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // A task waiting for room ends, and lets go of the pod.
        self.room.close();
    }
}

/// The room a frame takes: its data, at most the whole room.
fn f_len(frame: &Frame<Bytes>, cap: usize) -> usize {
    frame.data_ref().map_or(0, Bytes::len).min(cap)
}

/// The pod sent nothing for the read timeout.
#[derive(Debug, thiserror::Error)]
#[error("the pod sent no response data for {0:?}")]
pub struct ReadTimeout(Duration);

impl ResponseBody {
    /// `read_timeout`: `None` for a tunnel's 101 response, which has no body.
    pub fn new(
        inner: Incoming,
        in_flight: Option<LimitGuard>,
        read_timeout: Option<Duration>,
    ) -> Self {
        Self {
            inner: Inner::Pod(inner),
            _in_flight: in_flight,
            log: None,
            done: None,
            span: None,
            sent: 0,
            read_timeout,
            idle: None,
            armed: false,
        }
    }

    /// `proxy-buffering: on`: read ahead of the client, `cap` bytes at
    /// most; the read timeout is the reading task's.
    pub fn read_ahead(mut self, cap: usize) -> Self {
        if let (Inner::Pod(_), Some(timeout)) = (&self.inner, self.read_timeout) {
            let Inner::Pod(body) = std::mem::replace(
                &mut self.inner,
                Inner::ReadAhead(Box::new(ReadAhead::empty())),
            ) else {
                unreachable!("checked above")
            };
            self.inner = Inner::ReadAhead(Box::new(ReadAhead::spawn(body, cap, timeout)));
            self.read_timeout = None;
        }
        self
    }

    pub fn with_log(mut self, log: Box<PendingLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn with_done(mut self, done: Done) -> Self {
        self.done = Some(done);
        self
    }

    pub fn with_span(mut self, span: Option<Box<super::otel::PendingSpan>>) -> Self {
        self.span = span;
        self
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done.observe(self.sent);
        }
        if let Some(span) = self.span.take() {
            (*span).finish(self.sent);
        }
        if let Some(mut p) = self.log.take() {
            p.record.request_time = p.started.elapsed();
            let sent = p.record.body_bytes_sent;
            if let Some(last) = p.record.tries.last_mut() {
                last.response_length = sent;
            }
            p.log.log(&p.record);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                // Data came (or the end): the next wait starts afresh.
                this.armed = false;
                if let Some(Ok(f)) = frame.as_ref()
                    && let Some(data) = f.data_ref()
                {
                    this.sent += data.len() as u64;
                    if let Some(p) = this.log.as_mut() {
                        p.record.body_bytes_sent += data.len() as u64;
                    }
                }
                if let (Some(Err(e)), Some(span)) = (frame.as_ref(), this.span.as_mut()) {
                    span.body_failed(e);
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let Some(timeout) = this.read_timeout else {
                    return Poll::Pending;
                };
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !this.armed {
                    idle.as_mut().reset(tokio::time::Instant::now() + timeout);
                    this.armed = true;
                }
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        if let Some(span) = this.span.as_mut() {
                            span.body_failed(&ReadTimeout(timeout));
                        }
                        Poll::Ready(Some(Err(ReadTimeout(timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
