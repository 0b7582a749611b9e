//! The fast path's forward phase: sends the head and body to a pooled pod
//! connection, retries on the next pod as the shared policy says, and
//! streams the response back under its framing.

use super::*;

impl Proxy {
    /// Sends the request to the pod and streams the response to the
    /// client. `Ok(true)`: both connections can serve another request.
    pub(super) async fn forward_h1<S>(
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
    pub(super) async fn stream_body<S>(
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
    pub(super) async fn exchange<S>(
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
    pub(super) async fn connect(
        &self,
        peer: SocketAddr,
        f: &Forward,
    ) -> Result<UpConn, (ProxyError, u16)> {
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
    pub(super) async fn send_request<S>(
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
pub(super) fn note_try(
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
pub(super) async fn write_pod(
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
pub(super) async fn read_more(up: &mut UpConn, deadline: &mut Deadline) -> Result<(), ProxyError> {
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
pub(super) struct ResponseHead {
    pub(super) code: u16,
    pub(super) len: usize,
    pub(super) framing: Framing,
    /// The pod closes its side after this response.
    pub(super) pod_closes: bool,
    /// The client connection closes after this response.
    pub(super) close: bool,
}

/// Parses the response head at the start of `buf`, dropping interim (1xx)
/// responses; on a final one writes the client's head to `out`.
pub(super) fn response_head(
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

pub(super) fn check_limit(body: &BodyProgress, limit: u64) -> Result<(), ProxyError> {
    if body.decoded() > limit {
        Err(ProxyError::BodyTooLarge(limit))
    } else {
        Ok(())
    }
}

/// How much of a body has passed.
pub(super) enum BodyProgress {
    Length { remaining: u64, total: u64 },
    Chunked(Chunked),
    Close,
}

impl BodyProgress {
    pub(super) fn new(framing: Framing) -> Self {
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
    pub(super) fn take(&mut self, buf: &[u8]) -> Result<usize, &'static str> {
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

    pub(super) fn framing(&self) -> Framing {
        match self {
            BodyProgress::Length { total: 0, .. } => Framing::Empty,
            BodyProgress::Length { total, .. } => Framing::Length(*total),
            BodyProgress::Chunked(_) => Framing::Chunked,
            BodyProgress::Close => Framing::Close,
        }
    }

    pub(super) fn done(&self) -> bool {
        match self {
            BodyProgress::Length { remaining, .. } => *remaining == 0,
            BodyProgress::Chunked(c) => c.done(),
            // Ends when the pod closes; the reader sees that.
            BodyProgress::Close => false,
        }
    }

    pub(super) fn decoded(&self) -> u64 {
        match self {
            BodyProgress::Length { remaining, total } => total - remaining,
            BodyProgress::Chunked(c) => c.decoded(),
            BodyProgress::Close => 0,
        }
    }
}
