//! The request body on its way upstream: the client's stream with the
//! route's size limit applied as it flows (no buffering), or nothing (a
//! bodiless request being retried on another endpoint).

use std::{
    pin::Pin,
    task::{Context, Poll},
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
}

pub enum RequestBody {
    Stream {
        inner: Incoming,
        /// Bytes still allowed; `u64::MAX`: no limit.
        remaining: u64,
        limit: u64,
    },
    Empty,
}

impl RequestBody {
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
        let RequestBody::Stream {
            inner,
            remaining,
            limit,
        } = self.get_mut()
        else {
            return Poll::Ready(None);
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
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Stream { inner, .. } => inner.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
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
pub struct ResponseBody {
    inner: Incoming,
    _in_flight: Option<LimitGuard>,
}

impl ResponseBody {
    pub fn new(inner: Incoming, in_flight: Option<LimitGuard>) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
