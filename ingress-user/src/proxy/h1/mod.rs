//! The HTTP/1.1 fast path: one task per client connection parses each
//! request head in place, routes it on the live snapshot, writes the
//! rewritten head (and the body as it arrives) to a pooled keep-alive
//! connection to the pod, and streams the response back, all without a
//! per-request allocation, header map, channel or extra task.
//!
//! It serves HTTP/1.1 requests for plain-HTTP backends, which is nearly all
//! traffic. Anything else (HTTP/1.0, h2c, upgrades, `Expect`, absolute-form
//! targets, requests without Host, TLS/h2c/ExternalName backends) hands the
//! connection, with the bytes already read put back, to the hyper path.

mod bufs;
mod checked;
mod codec;
mod forward;
#[doc(hidden)]
pub mod fuzz;
mod pool;
mod prepare;
mod reply;
mod timer;

use std::{io, net::SocketAddr, pin::Pin, sync::Arc, task::Poll, time::Duration};

use http::StatusCode;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    time::timeout_at,
};

use super::{
    ConnState, Decision, Proxy, ProxyError, Routed, Target,
    abort::Abort,
    access_log::Record,
    headers::Downstream,
    retry::{self, Attempts},
    rewind::Rewind,
};
use crate::{
    metrics::{HandOffReason, RouteStats},
    model::{
        Peer,
        annotations::{NEXT_ERROR, NEXT_TIMEOUT},
    },
    shutdown::Shutdown,
};
pub use checked::Checked;
use codec::{Chunked, Forwarded, Framing, HeadError, MAX_HEADERS};
use forward::*;
use pool::UpConn;
pub use pool::{Keepalive, Pool};
use timer::Deadline;

/// Initial client read buffer; it grows up to the header limit for a head.
const CLIENT_BUF: usize = 8 * 1024;
/// Initial upstream head and client output buffers.
const HEAD_BUF: usize = 2048;
/// Read size while streaming bodies.
const BODY_READ: usize = 16 * 1024;
/// Largest response head accepted from a pod (502 past it).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// After an error reply on a half-read request: how long unread input is
/// drained so the client sees the reply rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;
/// The HTTP/2 connection preface's first line (h2c with prior knowledge).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// A client connection, its unread input and its timer.
pub(super) struct Client<S> {
    io: S,
    /// The client's address (for log lines of unroutable requests).
    client: std::net::IpAddr,
    /// Over TLS: responses carry the HSTS header (`--hsts`).
    tls: bool,
    buf: Vec<u8>,
    /// One timer, used by one phase at a time: the next request head (and
    /// body reads) must arrive by it, then the pod's answer (and each read
    /// of its body). One timer per connection, not two.
    deadline: Deadline,
    /// The clock at the last request sent or response head received: close
    /// enough for deadlines and idle times, and one clock read less.
    now: tokio::time::Instant,
}

impl<S> Client<S> {
    pub(super) fn new(proxy: &Proxy, io: S, down: &Downstream) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            io,
            client: down.client.ip(),
            tls: down.tls,
            buf: Vec::new(),
            deadline: Deadline::new(now + proxy.limits.header_read_timeout),
            now,
        }
    }

    /// The connection with its unread bytes in front (for hyper).
    pub(super) fn into_rewind(self) -> Rewind<S> {
        Rewind::new(self.buf, self.io)
    }
}

/// What the head in the buffer asks for.
enum Prepared {
    /// The head is not complete yet.
    Incomplete,
    /// hyper serves this connection from here on; with the plan made for
    /// this request when its route needs hyper's path, else it routes the
    /// request itself (HTTP/1.0, an upgrade, ...).
    HandOff(Option<Box<Routed>>),
    /// The proxy answers itself.
    Reply(Reply),
    Forward(Forward),
}

struct Reply {
    status: StatusCode,
    body: &'static [u8],
    /// One more header field: a redirect's Location, a 401's challenge.
    field: Option<(&'static [u8], Vec<u8>)>,
    head_len: usize,
    head_request: bool,
    /// Close after it: the request was malformed, or its body is unread.
    close: bool,
    stats: Option<Arc<RouteStats>>,
    /// The access log's record, when the request is logged.
    record: Option<Box<Record>>,
    /// The request method (`metrics::method_index`).
    method: u8,
}

struct Forward {
    peer: SocketAddr,
    target: Target,
    head_len: usize,
    framing: Framing,
    head_request: bool,
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE.
    idempotent: bool,
    close: bool,
    stats: Arc<RouteStats>,
    /// The access log's record, when the request is logged.
    record: Option<Box<Record>>,
    /// The request method (`metrics::method_index`).
    method: u8,
}

impl Forward {
    /// Whether a request that failed on a stale pooled connection can be
    /// sent again: bodiless and idempotent (a body was consumed as sent).
    fn resendable_on_stale(&self) -> bool {
        self.framing == Framing::Empty && self.idempotent
    }
}

/// How one exchange with a pod failed.
enum Exchange {
    /// Before any response byte, on the way there or back.
    Stale(ProxyError),
    Failed(Failed),
}

/// How a forwarded request failed.
enum Failed {
    /// Before the response head reached the client: answer with this error.
    Early(ProxyError),
    /// After: the client connection is cut.
    Late,
}

impl From<ProxyError> for Failed {
    fn from(e: ProxyError) -> Self {
        Failed::Early(e)
    }
}

/// How the fast path left a connection.
pub(super) enum Ended {
    /// Closed, or done with.
    Done,
    /// hyper serves the rest, the unread bytes in front; the first request
    /// with this plan if the fast path routed it.
    HandOff(Option<Box<Routed>>),
}

/// Serves HTTP/1.1 requests on `io` until the client closes, an error
/// closes the connection, or a request needs hyper: then the connection is
/// returned with its unread bytes in front.
pub(super) async fn serve<S>(
    proxy: &Arc<Proxy>,
    c: &mut Client<S>,
    down: &Downstream,
    conn: &ConnState,
    shutdown: &Shutdown,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Abort + Unpin,
{
    // What an idle connection's task holds is this function's state (and
    // its caller's): each field here costs 10,000 idle clients 10,000
    // times. Buffers are taken when a request's bytes come and handed back
    // when the connection waits for the next one (`bufs`); the request's
    // own state is boxed below.
    let mut first = true;
    let mut served: u32 = 0;
    loop {
        // `client-header-timeout` for a head, `keep-alive` for the wait
        // before the next one, `keep-alive-requests` per connection.
        let limits = proxy.client_limits();
        let wait = if first || !c.buf.is_empty() {
            limits.header_timeout
        } else {
            limits.keep_alive
        };
        c.deadline.set(c.now + wait);
        if c.buf.is_empty() {
            bufs::give(&mut c.buf);
            let read = tokio::select! {
                biased;
                r = c.deadline.run(bufs::read_into(&mut c.io, &mut c.buf, CLIENT_BUF)) => r,
                () = shutdown.wait() => return Ended::Done,
            };
            match read {
                Some(Ok(n)) if n > 0 => {}
                // Closed, failed, or idle past the keep-alive timeout.
                _ => return Ended::Done,
            }
            // A head has begun: the rest within the header timeout.
            c.deadline
                .set(tokio::time::Instant::now() + proxy.client_limits().header_timeout);
        }
        // Read again rather than kept over the wait: the task stays small.
        let limits = proxy.client_limits();
        served = served.saturating_add(1);
        let last = limits.keep_alive.is_zero() || limits.requests.is_some_and(|m| served >= m);
        let step =
            Box::pin(proxy.serve_request(c, down, conn, shutdown, (first, last), limits.max_head));
        first = false;
        match step.await {
            Step::Next => {}
            Step::Close => {
                let _ = c.io.shutdown().await;
                return Ended::Done;
            }
            Step::Gone => return Ended::Done,
            Step::HandOff(routed) => return Ended::HandOff(routed),
        }
    }
}

/// What a connection does after a request.
enum Step {
    /// Serve the next request.
    Next,
    /// Shut down the connection (it asked to close, or we are stopping).
    Close,
    /// The connection is already done with (error, reply and linger).
    Gone,
    /// hyper serves it from here, the unread bytes in front.
    HandOff(Option<Box<Routed>>),
}

/// A request's upstream head and client output buffers, taken from the
/// free list when needed and handed back when the request is done.
#[derive(Default)]
struct Buffers {
    up_head: Vec<u8>,
    out: Vec<u8>,
}

impl Drop for Buffers {
    fn drop(&mut self) {
        bufs::give(&mut self.up_head);
        bufs::give(&mut self.out);
    }
}

impl Proxy {
    /// Reads the rest of a request head whose first bytes are in `c.buf`,
    /// then answers or forwards it.
    #[allow(clippy::too_many_arguments)]
    async fn serve_request<S>(
        &self,
        c: &mut Client<S>,
        down: &Downstream,
        conn: &ConnState,
        shutdown: &Shutdown,
        (first, last): (bool, bool),
        max_head: usize,
    ) -> Step
    where
        S: AsyncRead + AsyncWrite + Abort + Unpin,
    {
        // Back to the free list when the request is done.
        let mut bufs = Buffers::default();
        let Buffers { up_head, out } = &mut bufs;
        let started = std::time::Instant::now();
        let limits = &self.limits;
        let send_timeout = limits.client_send_timeout;
        // Read until a whole head is in the buffer.
        // A head can only have ended where a line ended: bytes before
        // `unseen` held no new line end, so a head trickled in byte by byte
        // is parsed once per line, not once per byte.
        let mut unseen = 0;
        let prepared = loop {
            if first && is_h2_preface(&c.buf) {
                if c.buf.len() >= H2_PREFACE.len() {
                    self.metrics.handoff(HandOffReason::H2c);
                    return Step::HandOff(None);
                }
                // Could still be the preface: read on.
            } else if c.buf[unseen..].contains(&b'\n') {
                unseen = c.buf.len();
                if up_head.capacity() == 0 {
                    *up_head = bufs::take(HEAD_BUF);
                }
                up_head.clear();
                match self.prepare(&c.buf, down, conn, up_head) {
                    Prepared::Incomplete => {}
                    other => break other,
                }
            }
            if c.buf.len() >= max_head {
                break Prepared::Reply(Reply::error(ProxyError::HeadTooLarge));
            }
            if c.buf.capacity() - c.buf.len() < 1024 {
                c.buf.reserve(CLIENT_BUF);
            }
            match c.deadline.run(c.io.read_buf(&mut c.buf)).await {
                Some(Ok(n)) if n > 0 => {}
                // Closed, failed, or slow past the header timeout.
                _ => return Step::Gone,
            }
        };
        if out.capacity() == 0 {
            *out = bufs::take(HEAD_BUF);
        }
        // A whole head that came in one read is bounded too, not only one
        // still arriving (`large-client-header-buffers`).
        let head_len = match &prepared {
            Prepared::Forward(f) => f.head_len,
            Prepared::Reply(r) => r.head_len,
            _ => 0,
        };
        let mut prepared = if head_len > max_head {
            Prepared::Reply(Reply::error(ProxyError::HeadTooLarge))
        } else {
            prepared
        };
        // The connection's last request says so (Connection: close).
        if last {
            match &mut prepared {
                Prepared::Forward(f) => f.close = true,
                Prepared::Reply(r) => r.close = true,
                _ => {}
            }
        }
        let keep_alive = match prepared {
            Prepared::Incomplete => unreachable!("the loop above only ends with a full head"),
            Prepared::HandOff(routed) => {
                self.metrics.handoff(match routed {
                    Some(_) => HandOffReason::Route,
                    None => HandOffReason::Protocol,
                });
                return Step::HandOff(routed);
            }
            Prepared::Reply(mut reply) => {
                let close = reply.close || shutdown.is_fired();
                reply.write(out, close, self.hsts(c.tls).as_ref().map(|v| v.as_bytes()));
                self.log_reply(c, &mut reply, started);
                if write_all(&mut c.io, out, send_timeout).await.is_err() {
                    return Step::Gone;
                }
                if close {
                    linger(c).await;
                    return Step::Gone;
                }
                c.buf.drain(..reply.head_len);
                true
            }
            Prepared::Forward(mut f) => {
                c.buf.drain(..f.head_len);
                let mut record = f.record.take();
                let forwarded = self
                    .forward_h1(c, &f, up_head, out, shutdown, record.as_deref_mut())
                    .await;
                let logged = |status: Option<u16>| {
                    if let (Some(log), Some(mut r)) = (&self.access_log, record) {
                        if let Some(status) = status {
                            r.status = status;
                        }
                        r.request_time = started.elapsed();
                        log.log(&r);
                    }
                };
                match forwarded {
                    Ok(keep) => {
                        logged(None);
                        keep && !f.close
                    }
                    Err(Failed::Late) => {
                        logged(None);
                        return Step::Gone;
                    }
                    Err(Failed::Early(e)) => {
                        // The request body may be half read: close after.
                        f.stats.record(e.status());
                        f.stats.observe(
                            e.status().as_u16(),
                            f.method,
                            f.head_len as u64,
                            e.body().len() as u64,
                            started.elapsed(),
                        );
                        logged(Some(e.status().as_u16()));
                        Reply::error_page(
                            &self.metrics,
                            &e,
                            out,
                            self.hsts(c.tls).as_ref().map(|v| v.as_bytes()),
                        );
                        if write_all(&mut c.io, out, send_timeout).await.is_ok() {
                            linger(c).await;
                        }
                        return Step::Gone;
                    }
                }
            }
        };
        if !keep_alive || shutdown.is_fired() {
            Step::Close
        } else {
            Step::Next
        }
    }
}

fn is_h2_preface(buf: &[u8]) -> bool {
    let n = buf.len().min(H2_PREFACE.len());
    buf[..n] == H2_PREFACE[..n]
}

/// Writes to the client; one that reads nothing for `--client-send-timeout`
/// is dropped (slow-read guard). The timer is only armed when a write waits.
async fn write_all<S: AsyncWrite + Abort + Unpin>(
    io: &mut S,
    mut buf: &[u8],
    limit: Duration,
) -> io::Result<()> {
    // Usually the socket takes it all at once: no timer needed.
    let n = std::future::poll_fn(|cx| match Pin::new(&mut *io).poll_write(cx, buf) {
        Poll::Ready(r) => Poll::Ready(r),
        Poll::Pending => Poll::Ready(Ok(0)),
    })
    .await?;
    buf = &buf[n..];
    if buf.is_empty() {
        let flushed = std::future::poll_fn(|cx| match Pin::new(&mut *io).poll_flush(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await;
        if let Some(r) = flushed {
            return r;
        }
    }
    let write = async {
        io.write_all(buf).await?;
        io.flush().await
    };
    let Ok(written) = tokio::time::timeout(limit, write).await else {
        // What it did not read stays unsent: reset rather than close, so
        // neither the queue nor the socket outlives the connection.
        io.abort();
        return Err(io::ErrorKind::TimedOut.into());
    };
    written
}

/// Closes after an error reply: stop writing, then read and discard what
/// the client is still sending for a while, so that it reads the reply
/// instead of a connection reset.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<S>) {
    let _ = c.io.shutdown().await;
    let deadline = tokio::time::Instant::now() + LINGER;
    let mut drained = 0;
    // On the heap: an array here would make every connection's task 4 KiB
    // larger for the rare error reply.
    let mut scratch = vec![0u8; 4096];
    while drained < LINGER_BYTES {
        match timeout_at(deadline, c.io.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => return,
        }
    }
}
