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
#[doc(hidden)]
pub mod fuzz;
mod pool;
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

impl Proxy {
    /// The access log line of a reply the proxy wrote itself; a request
    /// too malformed to route gets one too (with what could be read).
    fn log_reply<S>(&self, c: &Client<S>, reply: &mut Reply, started: std::time::Instant) {
        if let Some(stats) = &reply.stats {
            let body = if reply.head_request {
                0
            } else {
                reply.body.len() as u64
            };
            stats.observe(
                reply.status.as_u16(),
                reply.method,
                reply.head_len as u64,
                body,
                started.elapsed(),
            );
        }
        let Some(log) = &self.access_log else { return };
        let mut r = match reply.record.take() {
            Some(r) => r,
            // No record: refused before routing (a malformed head).
            None if reply.stats.is_none() => Box::new(Record {
                client: Some(c.client),
                version: "HTTP/1.1",
                ..Record::default()
            }),
            // Routed to a rule with `enable-access-log: "false"`.
            None => return,
        };
        r.status = reply.status.as_u16();
        r.body_bytes_sent = if reply.head_request {
            0
        } else {
            reply.body.len() as u64
        };
        r.request_time = started.elapsed();
        log.log(&r);
    }
}

impl Reply {
    /// An error about the request itself; the connection closes after it.
    fn error(e: ProxyError) -> Self {
        Reply {
            status: e.status(),
            body: e.body().as_bytes(),
            field: None,
            head_len: 0,
            head_request: false,
            close: true,
            stats: None,
            record: None,
            method: 0,
        }
    }

    fn write(&self, out: &mut Vec<u8>, close: bool, hsts: Option<&[u8]>) {
        out.clear();
        codec::write_local_response(
            out,
            self.status,
            self.body,
            self.field.as_ref().map(|(n, v)| (*n, &v[..])),
            self.head_request,
            close,
            hsts,
        );
        if let Some(stats) = &self.stats {
            stats.record(self.status);
        }
    }

    /// The error page for a request that failed before its response began.
    fn error_page(
        metrics: &crate::metrics::Metrics,
        e: &ProxyError,
        out: &mut Vec<u8>,
        hsts: Option<&[u8]>,
    ) {
        metrics.error(e.source());
        if e.source() == super::ErrorSource::Upstream {
            tracing::debug!("{e}");
        }
        out.clear();
        codec::write_local_response(
            out,
            e.status(),
            e.body().as_bytes(),
            None,
            false,
            true,
            hsts,
        );
    }
}

impl Proxy {
    /// Parses the head at the start of `buf` and decides what to do with
    /// it; for a forwarded request, writes the upstream head to `up_head`.
    fn prepare(
        &self,
        buf: &[u8],
        down: &Downstream,
        conn: &ConnState,
        up_head: &mut Vec<u8>,
    ) -> Prepared {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Prepared::Incomplete,
            Err(httparse::Error::TooManyHeaders) => {
                return Prepared::Reply(Reply::error(ProxyError::HeadTooLarge));
            }
            Err(httparse::Error::Version) => return Prepared::HandOff(None),
            Err(_) => {
                return Prepared::Reply(Reply::error(ProxyError::BadRequest(
                    "malformed request head",
                )));
            }
        };
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Prepared::HandOff(None);
        };
        // HTTP/1.0 keep-alive rules, absolute-form and asterisk-form
        // targets: hyper's.
        if req.version != Some(1) || !target.starts_with('/') {
            return Prepared::HandOff(None);
        }
        let info = match codec::analyze_request(req.headers) {
            Ok(info) => info,
            Err(e) => {
                let error = match e {
                    HeadError::Bad(why) => ProxyError::BadRequest(why),
                    HeadError::NotImplemented => ProxyError::NotImplemented,
                };
                return Prepared::Reply(Reply::error(error));
            }
        };
        // `use-forwarded-headers`: this request's client, and what the pod
        // is told, come from a trusted X-Forwarded-For.
        // What the pod is told of the client, per request (a few tens of
        // nanoseconds; keeping it per connection cost every idle client
        // 136 bytes).
        let request_down;
        let rules = self.client_address();
        let down = if rules.reads_forwarded_for() {
            let xff = req
                .headers
                .iter()
                .filter(|h| {
                    h.name
                        .eq_ignore_ascii_case(rules.forwarded_for_header().as_str())
                })
                .map(|h| h.value);
            request_down = super::Proxy::request_downstream(&rules, *down, xff);
            &request_down
        } else {
            down
        };
        let fwd = &Forwarded::new(down, &rules);
        if info.host.is_none() {
            // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
            return Prepared::Reply(Reply::error(ProxyError::BadRequest(
                "HTTP/1.1 request without Host",
            )));
        }
        if info.upgrade || info.expect {
            return Prepared::HandOff(None);
        }
        let framing = info.framing;
        let has_body = framing != Framing::Empty;
        let head_request = method == "HEAD";
        let (path, _query) = target.split_once('?').unwrap_or((target, ""));
        let raw_host = info.host.and_then(|h| std::str::from_utf8(h).ok());
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        let cookie = |name: &str| {
            let fields = req
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"));
            super::cookie_value(fields.map(|h| h.value), name)
        };
        let view = super::RequestView {
            method,
            options: method == "OPTIONS",
            header: &header,
            cookie: &cookie,
            log_off: std::cell::Cell::new(false),
        };
        let (decision, stats) = self.route(down, conn, raw_host, path, target, &view);
        self.report_flow(down, conn, &decision);
        // The plan says which path carries it out; hyper's gets it as made,
        // so that it is counted once.
        let hand_off = |decision, stats| {
            Prepared::HandOff(Some(Box::new(Routed {
                decision: Ok(decision),
                stats,
                log: !view.log_off.get(),
            })))
        };
        let decision = match decision {
            Ok(d) if !d.fast_path_carries() => return hand_off(d, stats),
            other => other,
        };
        // X-Request-ID: the client's, or ours (the pod and the log get it).
        let request_id =
            (!info.has_request_id && !rules.no_request_id).then(super::headers::request_id_hex);
        let mut record = match &self.access_log {
            Some(_) if !view.log_off.get() => {
                let mut r = Record::request(down.client.ip(), method, target, "HTTP/1.1", &header);
                if let Some(t) = self.access_log.as_ref().and_then(|l| l.http_headers()) {
                    r.keep_headers(&t, &header);
                }
                if let Some(id) = &request_id {
                    r.request_id = std::str::from_utf8(id).ok().map(Into::into);
                }
                r.request_length = head_len as u64;
                Some(Box::new(r))
            }
            _ => None,
        };
        let mut reply = |status, body, field| {
            Prepared::Reply(Reply {
                status,
                body,
                field,
                head_len,
                head_request,
                close: has_body || info.close,
                stats: Some(stats.clone()),
                record: record.take(),
                method: crate::metrics::method_index(method.as_bytes()),
            })
        };
        let target = match decision {
            Ok(Decision::Forward(t)) => t,
            // `fast_path_carries` gave these to hyper above.
            Ok(d @ (Decision::Preflight(_) | Decision::Reply(_))) => {
                return hand_off(d, stats);
            }
            Ok(Decision::Redirect(status, location)) => {
                return reply(
                    status,
                    super::redirect_body(status),
                    Some((&b"Location"[..], location.as_bytes().to_vec())),
                );
            }
            Err(e) => {
                self.metrics.error(e.source());
                let field = match &e {
                    ProxyError::Unauthorized(Some(challenge)) => {
                        Some((&b"WWW-Authenticate"[..], challenge.as_bytes().to_vec()))
                    }
                    _ => None,
                };
                return reply(e.status(), e.body().as_bytes(), field);
            }
        };
        let Peer::Addr(peer) = target.peer else {
            // `fast_path_carries` gave this to hyper above.
            return hand_off(Decision::Forward(target), stats);
        };
        if let (Framing::Length(n), Some(limit)) = (framing, target.body_limit)
            && n > limit
        {
            let e = ProxyError::BodyTooLarge(limit);
            self.metrics.error(e.source());
            return reply(e.status(), e.body().as_bytes(), None);
        }
        codec::write_request_head(
            up_head,
            &req,
            &info,
            fwd,
            target.normalized.as_deref(),
            request_id.as_ref(),
            target.edits.as_ref().and_then(|e| e.request.as_deref()),
        );
        if let Some(r) = record.as_deref_mut() {
            r.upstream_name = Some(super::access_log::upstream_name(&target.backend));
            r.route = target.ingress.clone().map(|i| (i, target.backend.clone()));
        }
        Prepared::Forward(Forward {
            peer,
            idempotent: retry::idempotent(method.as_bytes()),
            target,
            head_len,
            framing,
            head_request,
            close: info.close,
            stats,
            record,
            method: crate::metrics::method_index(method.as_bytes()),
        })
    }

    /// Sends the request to the pod and streams the response to the
    /// client. `Ok(true)`: both connections can serve another request.
    async fn forward_h1<S>(
        &self,
        c: &mut Client<S>,
        f: &Forward,
        up_head: &[u8],
        out: &mut Vec<u8>,
        shutdown: &Shutdown,
        mut rec: Option<&mut Record>,
    ) -> Result<bool, Failed>
    where
        S: AsyncRead + AsyncWrite + Abort + Unpin,
    {
        let sent = tokio::time::Instant::now();
        c.now = sent;
        let fired = shutdown.is_fired();
        // `upstream-keepalive-*` of the live configuration.
        let keep = self.snapshots.load().table.upstream_keepalive;
        let policy = f.target.policy();
        let mut attempts = Attempts::new(
            &f.target.backend,
            policy,
            f.peer,
            f.framing == Framing::Empty,
            f.idempotent,
        );
        let mut peer = f.peer;
        let mut body_sent = 0;
        let (up, head) = 'tries: loop {
            let try_started = std::time::Instant::now();
            // Every failure of this try ends below: (error, case, whether
            // the request reached the pod).
            let (e, case, reached) = 'attempt: {
                let (mut up, fresh) = match self.pool.take(peer, sent.into_std(), &keep) {
                    Some(conn) => (conn, false),
                    None => match self.connect(peer, f).await {
                        Ok(conn) => (conn, true),
                        // Nothing was sent: any request may go on.
                        Err((e, case)) => break 'attempt (e, case, false),
                    },
                };
                let mut exchange = self
                    .exchange(c, &mut up, f, up_head, out, fired, &mut body_sent)
                    .await;
                if !fresh && matches!(exchange, Err(Exchange::Stale(_))) && f.resendable_on_stale()
                {
                    // A pooled connection the pod closed meanwhile failed
                    // before any response byte: once more on a new one.
                    match self.connect(peer, f).await {
                        Ok(conn) => up = conn,
                        Err((e, case)) => break 'attempt (e, case, false),
                    }
                    exchange = self
                        .exchange(c, &mut up, f, up_head, out, fired, &mut body_sent)
                        .await;
                }
                match exchange {
                    Ok(head) => {
                        note_try(&mut rec, peer, head.code, try_started);
                        let (go_on, counts) = policy.on_status(head.code);
                        if counts {
                            self.health
                                .failed(peer, policy, &format!("answered {}", head.code));
                        } else {
                            self.health.succeeded(peer);
                        }
                        if go_on
                            && let Some(next) = attempts.next_on_status(head.code, &self.health)
                        {
                            tracing::debug!(failed = %peer, retry = %next, status = head.code, "trying another endpoint");
                            self.metrics.upstream_retry();
                            // The response is not read: the connection goes.
                            peer = next;
                            continue 'tries;
                        }
                        break 'tries (up, head);
                    }
                    Err(Exchange::Stale(e)) => (e, NEXT_ERROR, true),
                    Err(Exchange::Failed(Failed::Late)) => return Err(Failed::Late),
                    Err(Exchange::Failed(Failed::Early(e))) => {
                        let case = match &e {
                            ProxyError::UpstreamTimeout => NEXT_TIMEOUT,
                            ProxyError::Upstream(_) => NEXT_ERROR,
                            // The client's fault (body too large, closed): no retry.
                            _ => return Err(e.into()),
                        };
                        (e, case, true)
                    }
                }
            };
            note_try(&mut rec, peer, e.status().as_u16(), try_started);
            self.health.failed(peer, policy, &e.to_string());
            if let Some(next) = attempts.next(case, reached, &self.health) {
                tracing::debug!(failed = %peer, retry = %next, "{e}; trying another endpoint");
                self.metrics.upstream_retry();
                peer = next;
                continue;
            }
            return Err(e.into());
        };
        let mut up = up;
        if let Some(r) = rec.as_deref_mut() {
            r.status = head.code;
            r.request_length += body_sent;
        }
        c.now = tokio::time::Instant::now();
        self.metrics.upstream_latency(c.now - sent);
        if f.target.ewma {
            self.ewma.observe(peer, c.now - sent);
        }
        let framing = head.framing;
        let mut body = BodyProgress::new(framing);
        let rest = &up.buf[head.len..];
        let taken = body
            .take(rest)
            .map_err(|e| ProxyError::Upstream(e.into()))?;
        out.extend_from_slice(&rest[..taken]);
        let mut bytes_out = taken as u64;
        // Bytes past the response: the pod is out of step; never reuse it.
        let mut reusable = taken == rest.len() && !head.pod_closes;
        f.stats
            .record(StatusCode::from_u16(head.code).unwrap_or(StatusCode::BAD_GATEWAY));
        let result = self
            .stream_body(
                c,
                f,
                &mut up,
                out,
                peer,
                body,
                &mut bytes_out,
                &mut reusable,
            )
            .await;
        if let Some(r) = rec {
            r.body_bytes_sent = bytes_out;
            if let Some(last) = r.tries.last_mut() {
                last.response_length = bytes_out;
            }
        }
        f.stats.observe(
            head.code,
            f.method,
            f.head_len as u64 + body_sent,
            bytes_out,
            sent.elapsed(),
        );
        result?;
        if reusable && framing != Framing::Close {
            self.pool.put(peer, up, c.now.into_std(), &keep);
        }
        Ok(!head.close)
    }

    /// Writes the response head (in `out`) and the body to the client.
    #[allow(clippy::too_many_arguments)]
    async fn stream_body<S>(
        &self,
        c: &mut Client<S>,
        f: &Forward,
        up: &mut UpConn,
        out: &[u8],
        peer: SocketAddr,
        mut body: BodyProgress,
        bytes_out: &mut u64,
        reusable: &mut bool,
    ) -> Result<(), Failed>
    where
        S: AsyncRead + AsyncWrite + Abort + Unpin,
    {
        let send_timeout = self.limits.client_send_timeout;
        let framing = body.framing();
        if write_all(&mut c.io, out, send_timeout).await.is_err() {
            return Err(Failed::Late);
        }

        // The rest of the body.
        while !body.done() {
            up.buf.clear();
            c.deadline
                .set(tokio::time::Instant::now() + f.target.read_timeout);
            let n = match c.deadline.run(up.stream.read_buf(&mut up.buf)).await {
                Some(Ok(n)) => n,
                _ => return Err(Failed::Late),
            };
            if n == 0 {
                if framing == Framing::Close {
                    break;
                }
                tracing::debug!(peer = %peer, "pod closed the connection mid-body");
                return Err(Failed::Late);
            }
            let taken = body.take(&up.buf).map_err(|e| {
                tracing::debug!(peer = %peer, "bad response body framing: {e}");
                Failed::Late
            })?;
            *reusable &= taken == up.buf.len();
            if write_all(&mut c.io, &up.buf[..taken], send_timeout)
                .await
                .is_err()
            {
                return Err(Failed::Late);
            }
            *bytes_out += taken as u64;
        }
        Ok(())
    }

    /// One request and its response head on `up`. `Stale`: the connection
    /// failed before any byte of a response (a pooled one the pod closed).
    #[allow(clippy::too_many_arguments)]
    async fn exchange<S>(
        &self,
        c: &mut Client<S>,
        up: &mut UpConn,
        f: &Forward,
        up_head: &[u8],
        out: &mut Vec<u8>,
        fired: bool,
        body_sent: &mut u64,
    ) -> Result<ResponseHead, Exchange>
    where
        S: AsyncRead + AsyncWrite + Abort + Unpin,
    {
        if let Err(e) = self.send_request(c, up, f, up_head, out, body_sent).await {
            return Err(match e {
                Failed::Early(ProxyError::Upstream(why)) => {
                    Exchange::Stale(ProxyError::Upstream(why))
                }
                other => Exchange::Failed(other),
            });
        }
        up.buf.clear();
        c.deadline
            .set(tokio::time::Instant::now() + f.target.read_timeout);
        loop {
            if let Err(e) = read_more(up, &mut c.deadline).await {
                if up.buf.is_empty() && !matches!(e, ProxyError::UpstreamTimeout) {
                    return Err(Exchange::Stale(e));
                }
                return Err(Exchange::Failed(e.into()));
            }
            let hsts = self.hsts(c.tls);
            match response_head(
                &mut up.buf,
                f,
                out,
                fired,
                hsts.as_ref().map(|v| v.as_bytes()),
            ) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Exchange::Failed(e.into())),
            }
            if up.buf.len() > MAX_RESPONSE_HEAD {
                return Err(Exchange::Failed(
                    ProxyError::Upstream("response head too large".into()).into(),
                ));
            }
        }
    }

    /// A new connection to `peer`, within the route's connect timeout; on
    /// failure, the `proxy-next-upstream` case it is.
    async fn connect(&self, peer: SocketAddr, f: &Forward) -> Result<UpConn, (ProxyError, u16)> {
        let limit = f
            .target
            .connect_timeout
            .unwrap_or(self.limits.upstream_connect_timeout);
        if let Err(why) = self.guard.check(peer) {
            let e = ProxyError::UpstreamConnect(format!("{peer} refused: {}", why.reason()));
            return Err((e, NEXT_ERROR));
        }
        match tokio::time::timeout(limit, TcpStream::connect(peer)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(UpConn::new(stream))
            }
            Ok(Err(e)) => Err((
                ProxyError::UpstreamConnect(format!("{peer}: {e}")),
                NEXT_ERROR,
            )),
            Err(_) => Err((
                ProxyError::UpstreamConnect(format!("{peer}: connect timed out")),
                NEXT_TIMEOUT,
            )),
        }
    }

    /// Writes the head and the request body (as much as came with the head,
    /// then the rest as it arrives) to the pod. Consumes the request from
    /// the client buffer.
    async fn send_request<S>(
        &self,
        c: &mut Client<S>,
        up: &mut UpConn,
        f: &Forward,
        up_head: &[u8],
        scratch: &mut Vec<u8>,
        body_sent: &mut u64,
    ) -> Result<(), Failed>
    where
        S: AsyncRead + AsyncWrite + Abort + Unpin,
    {
        // `proxy-send-timeout`: each write may wait this long for the pod.
        let send_limit = f.target.policy().send_timeout;
        if f.framing == Framing::Empty {
            return write_pod(&mut up.stream, up_head, send_limit)
                .await
                .map_err(Into::into);
        }
        let limit = f.target.body_limit.unwrap_or(u64::MAX);
        let mut body = BodyProgress::new(f.framing);
        let taken = body.take(&c.buf).map_err(ProxyError::BadRequest)?;
        check_limit(&body, limit)?;
        scratch.clear();
        scratch.extend_from_slice(up_head);
        scratch.extend_from_slice(&c.buf[..taken]);
        c.buf.drain(..taken);
        *body_sent += taken as u64;
        write_pod(&mut up.stream, scratch, send_limit).await?;
        while !body.done() {
            if c.buf.capacity() - c.buf.len() < 1024 {
                c.buf.reserve(BODY_READ);
            }
            c.deadline
                .set(tokio::time::Instant::now() + self.limits.header_read_timeout);
            let n = match c.deadline.run(c.io.read_buf(&mut c.buf)).await {
                Some(Ok(n)) if n > 0 => n,
                Some(Ok(_)) => {
                    return Err(ProxyError::ClientBody("client closed mid-body".into()).into());
                }
                Some(Err(e)) => return Err(ProxyError::ClientBody(e.to_string()).into()),
                None => return Err(ProxyError::ClientBody("body read timed out".into()).into()),
            };
            let taken = body.take(&c.buf[..n]).map_err(ProxyError::BadRequest)?;
            check_limit(&body, limit)?;
            write_pod(&mut up.stream, &c.buf[..taken], send_limit).await?;
            c.buf.drain(..taken);
            *body_sent += taken as u64;
        }
        Ok(())
    }
}

/// Adds an upstream try to the access log record, if there is one.
fn note_try(
    rec: &mut Option<&mut Record>,
    peer: SocketAddr,
    status: u16,
    started: std::time::Instant,
) {
    if let Some(r) = rec.as_deref_mut() {
        r.tried(&peer, status, started.elapsed());
    }
}

/// Writes to the pod; one that reads nothing for `limit`
/// (`proxy-send-timeout`) fails the request.
async fn write_pod(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ProxyError> {
    match tokio::time::timeout(limit, stream.write_all(bytes)).await {
        Ok(r) => r.map_err(|e| ProxyError::Upstream(format!("sending the request: {e}"))),
        Err(_) => Err(ProxyError::Upstream(format!(
            "the pod read nothing for {limit:?} (proxy-send-timeout)"
        ))),
    }
}

/// Reads more of the pod's response into its buffer.
async fn read_more(up: &mut UpConn, deadline: &mut Deadline) -> Result<(), ProxyError> {
    if up.buf.capacity() - up.buf.len() < 1024 {
        up.buf.reserve(pool::UPSTREAM_BUF);
    }
    match deadline.run(up.stream.read_buf(&mut up.buf)).await {
        None => Err(ProxyError::UpstreamTimeout),
        Some(Err(e)) => Err(ProxyError::Upstream(format!("reading the response: {e}"))),
        Some(Ok(0)) => Err(ProxyError::Upstream(
            "the pod closed the connection before responding".into(),
        )),
        Some(Ok(_)) => Ok(()),
    }
}

/// A final response head, already rewritten for the client.
struct ResponseHead {
    code: u16,
    len: usize,
    framing: Framing,
    /// The pod closes its side after this response.
    pod_closes: bool,
    /// The client connection closes after this response.
    close: bool,
}

/// Parses the response head at the start of `buf`, dropping interim (1xx)
/// responses; on a final one writes the client's head to `out`.
fn response_head(
    buf: &mut Vec<u8>,
    f: &Forward,
    out: &mut Vec<u8>,
    shutting_down: bool,
    hsts: Option<&[u8]>,
) -> Result<Option<ResponseHead>, ProxyError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => {
                return Err(ProxyError::Upstream(format!(
                    "malformed response head: {e}"
                )));
            }
        };
        let code = resp.code.unwrap_or(0);
        if code == 101 {
            return Err(ProxyError::Upstream(
                "101 to a request that asked for no upgrade".into(),
            ));
        }
        if (100..200).contains(&code) {
            buf.drain(..len);
            continue;
        }
        let info = codec::analyze_response(code, f.head_request, resp.headers)
            .map_err(|e| ProxyError::Upstream(e.into()))?;
        // The pod closing its connection does not end the client's; a body
        // delimited by that close does.
        let close = info.framing == Framing::Close || f.close || shutting_down;
        out.clear();
        codec::write_response_head(out, &resp, &info, close, hsts, f.target.edits.as_deref());
        return Ok(Some(ResponseHead {
            code,
            len,
            framing: info.framing,
            pod_closes: info.close,
            close,
        }));
    }
}

fn check_limit(body: &BodyProgress, limit: u64) -> Result<(), ProxyError> {
    if body.decoded() > limit {
        Err(ProxyError::BodyTooLarge(limit))
    } else {
        Ok(())
    }
}

/// How much of a body has passed.
enum BodyProgress {
    Length { remaining: u64, total: u64 },
    Chunked(Chunked),
    Close,
}

impl BodyProgress {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyProgress::Length {
                remaining: 0,
                total: 0,
            },
            Framing::Length(n) => BodyProgress::Length {
                remaining: n,
                total: n,
            },
            Framing::Chunked => BodyProgress::Chunked(Chunked::default()),
            Framing::Close => BodyProgress::Close,
        }
    }

    /// How many of `buf`'s bytes belong to the body.
    fn take(&mut self, buf: &[u8]) -> Result<usize, &'static str> {
        match self {
            BodyProgress::Length { remaining, .. } => {
                let n = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                *remaining -= n as u64;
                Ok(n)
            }
            BodyProgress::Chunked(c) => c.scan(buf),
            BodyProgress::Close => Ok(buf.len()),
        }
    }

    fn framing(&self) -> Framing {
        match self {
            BodyProgress::Length { total: 0, .. } => Framing::Empty,
            BodyProgress::Length { total, .. } => Framing::Length(*total),
            BodyProgress::Chunked(_) => Framing::Chunked,
            BodyProgress::Close => Framing::Close,
        }
    }

    fn done(&self) -> bool {
        match self {
            BodyProgress::Length { remaining, .. } => *remaining == 0,
            BodyProgress::Chunked(c) => c.done(),
            // Ends when the pod closes; the reader sees that.
            BodyProgress::Close => false,
        }
    }

    fn decoded(&self) -> u64 {
        match self {
            BodyProgress::Length { remaining, total } => total - remaining,
            BodyProgress::Chunked(c) => c.decoded(),
            BodyProgress::Close => 0,
        }
    }
}
