//! The fast path's framing rules kept on a connection handed to hyper.
//!
//! Once a connection is hyper's, hyper reads every later request on it, and
//! hyper is more lenient than the fast path: it takes Transfer-Encoding
//! over Content-Length when both are sent (and drops Content-Length, so the
//! proxy cannot see it), and a bare LF in a chunked body's trailer section
//! lets the trailer swallow a pipelined request. This reader watches the
//! bytes hyper reads with the fast path's own analysis (the same head
//! rules, the same strict chunked scanner) and, on a request the fast path
//! would answer 400, gives hyper a broken byte in its place and then the
//! end of the input: hyper answers 400 (a bad head) or the request's body
//! fails (400 from the proxy), and nothing after it is ever read.
//!
//! It also times each request head from its first byte
//! (`client-header-timeout`): hyper's own header timer starts when the
//! connection starts waiting, idle time included, so it cannot tell a slow
//! head from a quiet keep-alive connection.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use super::{
    BodyProgress, H2_PREFACE, MAX_HEADERS,
    codec::{self, Framing},
};

enum Watch {
    /// Reading a request head (bytes kept in `head`).
    Head,
    Body(BodyProgress),
    /// An upgrade or HTTP/2: bytes pass.
    Off,
    /// A violation was found: the input has ended for hyper.
    Ended,
}

pub struct Checked<S> {
    inner: S,
    watch: Watch,
    head: Vec<u8>,
    /// Decided on the first bytes: HTTP/2 is not watched.
    started: bool,
    /// Longest head (hyper answers 431 past the same limit).
    max_head: usize,
    /// `client-header-timeout`, and the deadline of the head being read.
    header_timeout: Duration,
    head_deadline: Option<Instant>,
    /// Made when a head's bytes stop coming before it is complete.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<S> Checked<S> {
    pub fn new(inner: S, max_head: usize, header_timeout: Duration) -> Self {
        Self {
            inner,
            watch: Watch::Head,
            head: Vec::new(),
            started: false,
            max_head,
            header_timeout,
            head_deadline: None,
            timer: None,
        }
    }

    /// A head has been started and not finished past its deadline.
    fn head_timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.head_deadline else {
            return false;
        };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }
}

/// Where in `bytes` a violation is, if any; updates the watch.
fn scan(watch: &mut Watch, head: &mut Vec<u8>, max_head: usize, mut bytes: &[u8]) -> Option<usize> {
    let mut offset = 0;
    while !bytes.is_empty() {
        match watch {
            Watch::Off | Watch::Ended => return None,
            Watch::Head => {
                let before = head.len();
                head.extend_from_slice(bytes);
                // A head ends at a line end: parse only when one came (a
                // head trickled in byte by byte is parsed once per line).
                if !bytes.contains(&b'\n') {
                    if head.len() > max_head {
                        return Some(offset + bytes.len() - 1);
                    }
                    return None;
                }
                let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut fields);
                let end = match req.parse(head) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) if head.len() <= max_head => return None,
                    // Too long, or what hyper (also httparse) refuses too.
                    Ok(httparse::Status::Partial) | Err(_) => {
                        return Some(offset + bytes.len() - 1);
                    }
                };
                // The head's last byte is in `bytes`: `end - before - 1`.
                let last = offset + (end - before) - 1;
                let next = match codec::analyze_request(req.headers) {
                    Err(_) => return Some(last),
                    Ok(info) if info.upgrade => Watch::Off,
                    Ok(info) => match info.framing {
                        Framing::Empty => Watch::Head,
                        other => Watch::Body(BodyProgress::new(other)),
                    },
                };
                *watch = next;
                let used = end - before;
                head.clear();
                bytes = &bytes[used..];
                offset += used;
            }
            Watch::Body(body) => {
                let n = match body.take(bytes) {
                    Err(_) => return Some(offset),
                    Ok(n) => n,
                };
                let done = body.done();
                if done {
                    *watch = Watch::Head;
                }
                bytes = &bytes[n..];
                offset += n;
                if n == 0 && !done {
                    return None;
                }
            }
        }
    }
    None
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.watch, Watch::Ended) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            Poll::Pending if this.head_timed_out(cx) => {
                this.watch = Watch::Ended;
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "client-header-timeout: the request head did not come in time",
                )));
            }
            other => return other,
        }
        let new = &buf.filled()[before..];
        if !this.started && !new.is_empty() {
            this.started = true;
            let n = new.len().min(H2_PREFACE.len());
            if new[..n] == H2_PREFACE[..n] {
                this.watch = Watch::Off;
            }
        }
        if let Some(at) = scan(&mut this.watch, &mut this.head, this.max_head, new) {
            // Up to the offending byte as sent, that byte broken, then
            // nothing more.
            this.watch = Watch::Ended;
            this.head = Vec::new();
            buf.set_filled(before + at + 1);
            buf.filled_mut()[before + at] = 0;
        }
        // A head begun and not finished runs against the header timeout.
        if matches!(this.watch, Watch::Head) && !this.head.is_empty() {
            if this.head_deadline.is_none() {
                this.head_deadline = Some(Instant::now() + this.header_timeout);
            }
        } else {
            this.head_deadline = None;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(parts: &[&[u8]]) -> Option<(usize, usize)> {
        let (mut watch, mut head) = (Watch::Head, Vec::new());
        for (i, p) in parts.iter().enumerate() {
            if let Some(at) = scan(&mut watch, &mut head, 32 * 1024, p) {
                return Some((i, at));
            }
        }
        None
    }

    #[test]
    fn pipelined_requests_pass_and_framing_is_followed() {
        let ok: &[u8] = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(violation(&[ok]), None);
        // Byte by byte too.
        let bytes: Vec<&[u8]> = ok.chunks(1).collect();
        assert_eq!(violation(&bytes), None);
    }

    #[test]
    fn both_framings_break_the_heads_last_byte() {
        let req: &[u8] = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let end = req.windows(4).rposition(|w| w == b"\r\n\r\n").unwrap();
        // The second head ends at the "\r\n\r\n" before "0\r\n\r\n".
        let head_end = req[..end]
            .windows(4)
            .rposition(|w| w == b"\r\n\r\n")
            .unwrap()
            + 3;
        assert_eq!(violation(&[req]), Some((0, head_end)));
    }

    #[test]
    fn a_bare_lf_in_a_trailer_is_a_violation_in_the_body() {
        let req: &[u8] = b"POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            0\r\nX: y\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
        let (part, at) = violation(&[req]).unwrap();
        assert_eq!(part, 0);
        assert!(at > req.windows(4).position(|w| w == b"\r\n\r\n").unwrap());
        assert!(at < req.windows(9).position(|w| w == b"GET /smug").unwrap());
    }
}
